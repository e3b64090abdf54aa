"""The optional judge (semantic.judge) through the real gateway with the openai SDK; the
fake upstream answers judge prompts deterministically (see `hitrate.simulator`)."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time

import pytest

from hitrate.config import ConfigError, SemanticConfig, parse_config
from hitrate.semantic.judge import Band, Judge, parse_reply
from hitrate.semantic.learned import Verdict
from hitrate.semantic.lookup import build_semantic
from tests.conftest import NO_DEADLINE, ask
from tests.ops.conftest import MASTER, admin, scrape, value

JUDGE_IN, JUDGE_OUT = 1e-6, 4e-6  # USD per token, the judge model's price in these tests


def judge_gateway(make_gateway, upstream, **judge):
    judge = {"model": "judge-mini", "band": [0.0, 1.0], **judge}
    return make_gateway(
        cache={"semantic": {**NO_DEADLINE, "judge": judge}},
        models=[{"name": name, "model": "sim-model", "api_base": upstream.api_base}
                for name in ("gpt-test", "judge-mini")],
        costs={"models": {"judge-mini": {"input_cost_per_token": JUDGE_IN,
                                         "output_cost_per_token": JUDGE_OUT}}},
        master_key=MASTER)


def test_judge_yes_serves_the_candidate(make_gateway, upstream):
    gateway = judge_gateway(make_gateway, upstream)
    client = gateway.client(api_key=MASTER)
    _, first = ask(client, "How do I learn Go [[judge:yes]]?")
    headers, second = ask(client, "What is the best way to learn Go [[judge:yes]]?")
    assert headers["x-hitrate-cache"] == "hit"
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert upstream.calls("judge") == 1 and upstream.calls("chat") == 1
    # The pair's verdict is cached: asked again, no second judge call.
    headers, _ = ask(client, "What is the best way to learn Go [[judge:yes]]?",
                     extra_body={"cache": {"no-store": True}})
    assert headers["x-hitrate-cache"] == "hit"
    assert upstream.calls("judge") == 1
    judge_call = next(r for r in upstream.state.requests if r["messages"][0]["role"] == "system")
    assert judge_call["temperature"] == 0 and judge_call["max_tokens"] <= 3
    assert judge_call["model"] == "sim-model"  # the judge's deployment, as configured

    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_judge_calls_total", outcome="yes") == 1
    assert value(metrics, "hitrate_semantic_judge_reused_total") == 1
    assert value(metrics, "hitrate_cache_hits_total", kind="semantic") == 2


def test_judge_no_is_a_miss(make_gateway, upstream):
    gateway = judge_gateway(make_gateway, upstream)
    client = gateway.client(api_key=MASTER)
    ask(client, "How do I learn Python?")
    headers, answer = ask(client, "What is the best way to learn Python?")
    assert headers["x-hitrate-cache"] == "miss"
    assert "best way" in answer.choices[0].message.content
    assert upstream.calls("judge") == 1
    # Same words in another order: the fake judge says yes (own namespace: one candidate).
    words = {"cache": {"namespace": "words"}}
    ask(client, "How do I learn Python?", extra_body=words)
    headers, _ = ask(client, "Python: how do I learn?", extra_body=words)
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert upstream.calls("judge") == 2
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_judge_calls_total", outcome="no") == 1
    assert value(metrics, "hitrate_semantic_judge_calls_total", outcome="yes") == 1


@pytest.mark.parametrize(("marker", "outcome"), [("error", "error"), ("slow", "timeout")])
def test_judge_failure_or_timeout_is_a_miss(make_gateway, upstream, marker, outcome):
    # generous: a busy CI box must not turn the fast 500 into a timeout; the slow judge
    # answers after 5 s
    gateway = judge_gateway(make_gateway, upstream, timeout_ms=2000)
    client = gateway.client(api_key=MASTER)
    ask(client, f"How do I learn Go [[judge:{marker}]]?")
    headers, answer = ask(client, f"What is the best way to learn Go [[judge:{marker}]]?")
    assert headers["x-hitrate-cache"] == "miss"
    assert "best way" in answer.choices[0].message.content
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_semantic_judge_calls_total", outcome=outcome) == 1
    assert value(metrics, "hitrate_semantic_errors_total") == 0  # not a semantic failure


def test_judge_calls_cost_is_counted_and_netted(make_gateway, upstream):
    gateway = judge_gateway(make_gateway, upstream)
    client = gateway.client(api_key=MASTER)
    ask(client, "How do I learn Python?")
    ask(client, "What is the best way to learn Python?")  # judged: no
    ask(client, "How do I learn Go [[judge:yes]]?")
    ask(client, "What is the best way to learn Go [[judge:yes]]?")  # judged: yes, a hit
    judge_calls = [r for r in upstream.state.requests if r["messages"][0]["role"] == "system"]
    assert len(judge_calls) == upstream.calls("judge") >= 2
    metrics = scrape(gateway)
    prompt = value(metrics, "hitrate_semantic_judge_tokens_total", type="prompt")
    completion = value(metrics, "hitrate_semantic_judge_tokens_total", type="completion")
    # the fake judge's usage: the prompt's words + 20, one completion token
    assert prompt == sum(len(r["messages"][1]["content"].split()) + 20 for r in judge_calls)
    assert completion == len(judge_calls)
    cost = value(metrics, "hitrate_semantic_judge_cost_usd_total")
    assert math.isclose(cost, prompt * JUDGE_IN + completion * JUDGE_OUT, rel_tol=1e-9)
    saved = value(metrics, "hitrate_cost_saved_usd_total", model="gpt-test",
                  namespace="default")
    assert math.isclose(value(metrics, "hitrate_net_cost_saved_usd"), saved - cost,
                        rel_tol=1e-9, abs_tol=1e-15)
    savings = admin(gateway, "GET", "/cache/stats").json()["savings"]
    assert savings["spent"]["judge"]["calls"] == len(judge_calls)
    assert math.isclose(savings["spent"]["judge"]["cost_usd"], cost, rel_tol=1e-9)
    assert math.isclose(savings["net_cost_usd"], savings["cost_usd"] - cost, rel_tol=1e-9,
                        abs_tol=1e-15)
    table = subprocess.run([sys.executable, "-m", "hitrate.cli", "stats", "--url", gateway.url,
                            "--key", MASTER], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "spent (judge)" in table.stdout and "net saved" in table.stdout


def test_hard_vetoes_and_identical_wording_never_ask_the_judge(make_gateway, upstream):
    gateway = judge_gateway(make_gateway, upstream)
    client = gateway.client(api_key=MASTER)
    ask(client, "What is 2 plus 2 [[judge:yes]]?")
    assert ask(client, "What is 3 plus 2 [[judge:yes]]?")[0]["x-hitrate-cache"] == "miss"
    ask(client, "How do I learn Rust?")
    assert ask(client, "how do I learn rust")[0]["x-hitrate-cache-kind"] == "semantic"
    assert upstream.calls("judge") == 0


def test_judge_is_off_by_default_and_needs_a_known_model():
    assert SemanticConfig().judge is None and SemanticConfig().explore_rate == 0
    with pytest.raises(ConfigError, match=r"cache\.semantic\.judge\.model"):
        parse_config({"cache": {"semantic": {"judge": {"model": "nowhere"}}}})
    with pytest.raises(ConfigError, match="band"):
        parse_config({"models": [{"name": "j"}],
                      "cache": {"semantic": {"judge": {"model": "j", "band": [0.9, 0.2]}}}})


def test_default_band_asks_between_one_half_and_the_threshold():
    layer = build_semantic(SemanticConfig(judge={"model": "j"}), lambda name: object())
    assert layer.judge is not None and layer.judge.band == Band()
    # a kind whose model accepts at the default budget (the first English model, for
    # embedders other than e5, accepts nothing at 2%: its band is everything from 0.5 up)
    threshold = layer.settings.learned.thresholds["zh"]
    assert threshold < 1.0
    q, c = "怎么学好英语？", "如何才能学好英语呢？"
    assert layer._banded(q, c, Verdict(False, "model", 0.4)) is None
    assert layer._banded(q, c, Verdict(False, "model", (0.5 + threshold) / 2)) is False
    assert layer._banded(q, c, Verdict(True, "ok", threshold)) is True
    assert layer._banded(q, c, Verdict(False, "numbers", 0.0)) is None


@pytest.mark.parametrize(("reply", "outcome"), [
    ("yes", "yes"), ("Yes.", "yes"), (" NO", "no"), ("no, they differ", "no"),
    ("maybe", "unclear"), ("", "unclear"), (None, "unclear"), ("yesterday", "unclear")])
def test_parse_reply(reply, outcome):
    assert parse_reply(reply) == outcome


def _judge_on(upstream, **kwargs) -> Judge:
    from hitrate.gateway.upstream import HttpUpstream, new_http_client

    deployment = HttpUpstream(new_http_client(), upstream.api_base, model="sim-model")
    return Judge("judge-mini", lambda name: deployment, **kwargs)


async def test_concurrent_lookups_of_one_pair_share_one_call(upstream):
    judge = _judge_on(upstream)
    verdicts = await asyncio.gather(*(judge.same("s", "learn Go how", "how learn Go")
                                      for _ in range(5)))
    assert verdicts == [True] * 5
    assert upstream.calls("judge") == 1
    assert judge.stats.calls["yes"] == 1
    await judge._resolve("judge-mini").client.aclose()


async def test_a_busy_judge_is_a_miss_not_a_wait(upstream):
    judge = _judge_on(upstream, timeout=30.0, max_concurrency=1)
    slow = asyncio.create_task(judge.same("s", "a [[judge:slow]]", "b [[judge:slow]]"))
    deadline = time.monotonic() + 60
    while not judge._asking:  # the slow call has taken the only slot
        assert time.monotonic() < deadline, "the slow judge call never started"
        await asyncio.sleep(0.01)
    assert await judge.same("s", "How do I learn Go?", "Go: how do I learn?") is False
    assert judge.stats.busy == 1 and upstream.calls("judge") == 1
    judge.close()
    with pytest.raises(asyncio.CancelledError):
        await slow
    await judge._resolve("judge-mini").client.aclose()
