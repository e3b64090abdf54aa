"""Issue 13: typing style is not meaning. The default embedder reads each text folded
(lower case, no final question mark or full stop), so a question typed casually and the
same question typed formally get one vector; and the vector space (model + what it reads)
is part of the semantic scope, so entries embedded in another space are never compared
with these vectors."""

from __future__ import annotations

import numpy as np

from hitrate.config import SemanticConfig
from hitrate.semantic import e5_onnx
from hitrate.semantic.embedders import E5_SPACE, LocalEmbedder, e5
from hitrate.semantic.learned import load_verifier
from hitrate.semantic.lookup import SemanticLayer, build_semantic
from hitrate.semantic.text import embedding_text


def test_embedding_text_folds_case_and_final_punctuation_only():
    assert embedding_text("How do I descale a kettle?") == "how do i descale a kettle"
    assert embedding_text("  What is AI ?! ") == "what is ai"
    assert embedding_text("信用卡怎么提高额度？") == "信用卡怎么提高额度"
    assert embedding_text("Done. Now what?") == "done. now what"  # inner punctuation kept
    assert embedding_text("C++ or C#?") == "c++ or c#"
    assert embedding_text("?") == "?"  # nothing left: read as written


def test_the_default_embedder_gives_one_vector_whatever_the_typing_style():
    embedder = e5()
    assert embedder.vector_space == E5_SPACE
    styles = embedder.embed_sync(["How do I descale a kettle?", "how do i descale a kettle",
                                  "HOW DO I DESCALE A KETTLE."])
    other = embedder.embed_sync(["How do I descale a coffee machine?"])[0]
    assert np.allclose(styles[0], styles[1]) and np.allclose(styles[0], styles[2])
    assert float(styles[0] @ other) < 0.99


def test_the_shipped_vector_model_reads_the_default_embedders_space_only():
    verifier = load_verifier()
    assert verifier.reads_vectors_of(e5().vector_space)
    assert not verifier.reads_vectors_of("multilingual-e5-small")  # texts as written


async def test_entries_embedded_in_another_vector_space_are_never_searched():
    # No embedding deadline: on a busy machine a vector must never be given up on.
    built = build_semantic(SemanticConfig(embed_timeout_ms=None))
    index, settings = built.index, built.settings
    as_written = SemanticLayer(
        LocalEmbedder("multilingual-e5-small", lambda: e5_onnx.shared(threads=1).query),
        index, settings)
    folded = SemanticLayer(e5(), index, settings)
    text = "How do I learn Python quickly?"
    old_scope = as_written.scope_of("chat", {}, "", "tenant")
    await as_written.remember("key-1", text, await as_written.vector(text, old_scope),
                              old_scope, "", None)
    # In its own space the entry is found...
    old = await index.search(await as_written.vector(text, old_scope), scope=old_scope, k=3,
                             min_score=0.5)
    assert [match.key for match in old] == ["key-1"]
    # ...but a layer reading texts otherwise looks in a scope of its own.
    new_scope = folded.scope_of("chat", {}, "", "tenant")
    assert new_scope != old_scope
    assert await index.search(await folded.vector(text, new_scope), scope=new_scope, k=3,
                              min_score=0.5) == []
    for layer in (as_written, folded):
        await layer.close()
