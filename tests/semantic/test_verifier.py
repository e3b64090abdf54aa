"""The decision step on its own: each veto, with the similarity held high."""

from __future__ import annotations

import pytest

from hitrate.semantic.verifier import VerifierSettings, verify

HIGH = 0.99


@pytest.mark.parametrize(("query", "cached"), [
    ("How do I learn Python?", "How can I learn Python?"),
    ("what is the capital of france", "What is the capital of France?"),
    ("什么是人工智能？", "AI 是什么？"),
    ("東京の天気は？", "東京の天気は?"),
])
def test_paraphrases_pass(query, cached):
    assert verify(query, cached, HIGH).accept


@pytest.mark.parametrize(("query", "cached", "reason"), [
    ("What is 2+2?", "What is 2+3?", "numbers"),
    ("Is coffee good for you?", "Is coffee not good for you?", "negation"),
    ("咖啡对身体好吗", "咖啡对身体不好吗", "negation"),
    ("What is the capital of France?", "What is the capital of Germany?", "entity_swap"),
    ("How do I learn Python?", "How do I learn Java?", "entity_swap"),
    ("How do I use AWS?", "How do I use GCP?", "entity_swap"),
    ("Does the dog chase the cat?", "Does the cat chase the dog?", "reorder"),
    ("Is coffee bad for health?", "Is coffee good for health?", "slot_swap"),
    ("What is Python?", "What is Python used for?", "extra_content"),
    ("大阪の天気は？", "東京の天気は？", "slot_swap"),
    ("バスが止まっています", "バスが止まろうとしています", "slot_swap"),
])
def test_near_misses_are_vetoed(query, cached, reason):
    verdict = verify(query, cached, HIGH)
    assert not verdict.accept
    assert verdict.reason == reason


def test_passive_voice_counts_as_reorder():
    """Safe side: a reordering of the content words might swap roles, so it is a miss."""
    verdict = verify("The DownloadManager class downloads and extracts TAR archives.",
                     "TAR archives are fetched and unpacked by the DownloadManager class.", HIGH)
    assert verdict.reason == "reorder"


def test_similarity_floor():
    assert verify("How do I learn Python?", "How can I learn Python?", 0.5).reason == "similarity"
    custom = VerifierSettings(min_similarity=0.4)
    assert verify("How do I learn Python?", "How can I learn Python?", 0.5, custom).accept


def test_rewordings_only_where_the_embedder_is_trusted():
    en = ("The manager class downloads, extracts and caches TAR archives.",
          "The manager class fetches, unpacks and stores TAR archives.")
    assert verify(*en, 0.99).accept
    assert verify(*en, 0.96).reason == "rewording"
    zh = ("他后来搬去了瑞士，然后搬去了意大利。", "他随后前往瑞士，再之后去了意大利。")
    assert verify(*zh, 0.99).reason in ("rewording_script", "reorder", "slot_swap")
    assert not verify(*zh, 0.99).accept
