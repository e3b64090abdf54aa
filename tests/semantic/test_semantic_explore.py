"""vCache-style per-entry thresholds (semantic.explore_rate) through the real gateway:
an explored would-be hit goes upstream, and the fresh answer teaches the entry."""

from __future__ import annotations

import math

from hitrate.semantic.explore import Explorer, answer_text
from tests.conftest import NO_DEADLINE, ask, stream_text
from tests.ops.conftest import scrape, value

NO_STORE = {"cache": {"no-store": True}}


def explore_gateway(make_gateway, **semantic):
    return make_gateway(cache={"semantic": {**NO_DEADLINE, "explore_rate": 1.0, "explore_seed": 1,
                                            **semantic}})


def test_a_disagreeing_answer_makes_the_same_paraphrase_miss_next_time(make_gateway, upstream):
    gateway = explore_gateway(make_gateway)
    explorer = gateway.cache.semantic.explorer
    client = gateway.client()
    ask(client, "How do I learn Python?")
    ask(client, "How do I learn Rust?")  # never explored: the control
    # A would-be hit, explored: it goes upstream (a miss); the fake upstream's answers
    # carry a call number, so they never agree.
    headers, _ = ask(client, "How can I learn Python?", extra_body=NO_STORE)
    assert headers["x-hitrate-cache"] == "miss"
    assert upstream.calls("chat") == 3
    explorer.rate = 0.0  # from now on, would-be hits are served
    headers, answer = ask(client, "How can I learn Python?", extra_body=NO_STORE)
    assert headers["x-hitrate-cache"] == "miss"
    assert "How can I learn Python?" in answer.choices[0].message.content
    headers, _ = ask(client, "How can I learn Rust?", extra_body=NO_STORE)
    assert headers["x-hitrate-cache-kind"] == "semantic"
    # and the entry still answers its own question exactly
    assert ask(client, "How do I learn Python?")[0]["x-hitrate-cache-kind"] == "exact"

    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_explorations_total", outcome="disagree") == 1
    assert value(metrics, "hitrate_semantic_entry_thresholds") == 1
    assert value(metrics, "hitrate_semantic_rejected_candidates_total",
                 reason="entry_threshold") == 1


def test_an_agreeing_answer_keeps_the_entry_serving(make_gateway, upstream):
    gateway = explore_gateway(make_gateway)
    client = gateway.client()
    # [[answer:paris]]: the fake upstream answers exactly "paris", on every call.
    ask(client, "What is the capital of France? [[answer:paris]]")
    headers, _ = ask(client, "What's the capital of France? [[answer:paris]]",
                     extra_body=NO_STORE)
    assert headers["x-hitrate-cache"] == "miss"  # explored
    gateway.cache.semantic.explorer.rate = 0.0
    headers, answer = ask(client, "What's the capital of France? [[answer:paris]]",
                          extra_body=NO_STORE)
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert answer.choices[0].message.content == "paris"
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_explorations_total", outcome="agree") == 1
    assert value(metrics, "hitrate_semantic_entry_thresholds") == 0


def test_answer_similarity_lets_reworded_answers_agree(make_gateway, upstream):
    # The fake answers differ only by their call number: close enough at 0.9.
    gateway = explore_gateway(make_gateway, explore_answer_similarity=0.9)
    client = gateway.client()
    ask(client, "How do I learn Python?")
    ask(client, "How can I learn Python?", extra_body=NO_STORE)
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_explorations_total", outcome="agree") == 1


def test_explore_rate_zero_means_no_exploration_and_no_per_entry_state(make_gateway, upstream):
    gateway = make_gateway(cache={"semantic": {**NO_DEADLINE}})
    assert gateway.cache.semantic.explorer is None and gateway.cache.semantic.judge is None
    client = gateway.client()
    ask(client, "How do I learn Python?")
    assert ask(client, "How can I learn Python?")[0]["x-hitrate-cache-kind"] == "semantic"
    assert "hitrate_semantic_explorations" not in scrape(gateway)["families"]


def test_thresholds_rise_on_disagreement_and_fall_only_with_many_agreements():
    explorer = Explorer(0.1, budget=0.02, seed=3)
    assert explorer.threshold("k") == -math.inf
    explorer.observe("k", 0.999, agreed=True)
    assert explorer.threshold("k") == -math.inf  # agreements alone change nothing
    explorer.observe("k", 0.995, agreed=False)
    assert 0.995 < explorer.threshold("k") <= 0.999
    for _ in range(5):
        explorer.observe("k", 0.997, agreed=True)
    assert explorer.threshold("k") > 0.995  # a handful of agreements do not undo it
    for _ in range(70):
        explorer.observe("k", 0.997, agreed=True)
    assert explorer.threshold("k") > 0.995  # 1 in 76: not yet within 2% with the margin
    for _ in range(10):
        explorer.observe("k", 0.997, agreed=True)
    assert explorer.threshold("k") == 0.995  # 1 in 86 is
    explorer.observe("k", 1.0, agreed=False)
    assert explorer.threshold("k") == 0.997  # 1 in 86 above 0.997; 2 in 87 above 0.995
    explorer.forget("k")
    assert explorer.threshold("k") == -math.inf
    explorer.observe("fresh", 1.0, agreed=False)
    assert explorer.threshold("fresh") > 1.0  # even identical wording: not served again


def test_the_same_seed_explores_the_same_lookups():
    explorers = [Explorer(0.3, seed=11), Explorer(0.3, seed=11)]
    runs = [[e.explore() for _ in range(50)] for e in explorers]
    assert runs[0] == runs[1] and 5 < sum(runs[0]) < 30


def test_answer_text_ignores_ids_and_usage():
    a = {"id": "x1", "created": 1, "usage": {"prompt_tokens": 3},
         "choices": [{"message": {"role": "assistant", "content": "Paris."}}]}
    b = {"id": "x2", "created": 2, "usage": {"prompt_tokens": 9},
         "choices": [{"message": {"role": "assistant", "content": "paris"}}]}
    assert answer_text(a) == "Paris."
    assert Explorer(1.0).agree_exactly(a, b)
    tool = {"choices": [{"message": {"tool_calls": [{"id": "c1", "function": {
        "name": "lookup", "arguments": "{\"q\": 1}"}}]}}]}
    assert "lookup" in answer_text(tool) and "c1" not in answer_text(tool)


def test_an_explored_stream_is_compared_too(make_gateway, upstream):
    gateway = explore_gateway(make_gateway)
    client = gateway.client()
    ask(client, "How do I learn Python?")
    headers, text, _ = stream_text(client, "How can I learn Python?", extra_body=NO_STORE)
    assert headers["x-hitrate-cache"] == "miss" and "How can I learn Python?" in text
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_explorations_total", outcome="disagree") == 1
