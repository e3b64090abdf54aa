"""`hitrate demo`: the gateway on an embedded cache in front of a simulated provider,
driven by the official `openai` SDK, with a table of what happened."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass
class Step:
    what: str
    status: str
    ms: float
    upstream_calls: int


def run_demo(latency: tuple[float, float] = (0.3, 0.8)) -> None:
    import openai

    from hitrate.config import parse_config
    from hitrate.gateway.app import create_app
    from hitrate.serving import BackgroundServer
    from hitrate.simulator import SimulatorState, create_simulator

    console = Console(width=None if Console().is_terminal else 110)
    state = SimulatorState(latency=latency)
    with tempfile.TemporaryDirectory() as cache_dir, \
            BackgroundServer(create_simulator(state)) as upstream:
        config = parse_config({
            "models": [{"name": "gpt-4o-mini", "api_base": f"{upstream.url}/v1",
                        "api_key": "sk-simulated"}],
            "cache": {"type": "disk", "disk_cache_dir": cache_dir, "ttl": 3600,
                      **({"semantic": {"index_dir": cache_dir}} if _semantic_available() else {})},
        })
        with BackgroundServer(create_app(config)) as gateway:
            console.print(f"[bold]hitrate demo[/]  gateway {gateway.url}  ->  simulated "
                          f"provider {upstream.url} ({latency[0] * 1000:.0f}-"
                          f"{latency[1] * 1000:.0f} ms per call), disk cache in {cache_dir}\n")
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="demo")
            steps = _workload(client, state, gateway.url)
    _report(console, steps)


def _semantic_available() -> bool:
    import importlib.util

    from hitrate.extras import EMBEDDERS

    _, modules = EMBEDDERS["e5"]
    return all(importlib.util.find_spec(m) for m in (*modules, "jieba"))


def _workload(client, state, gateway_url: str) -> list[Step]:
    import httpx
    import openai

    steps: list[Step] = []
    chat = client.chat.completions

    def calls() -> int:
        return sum(state.calls.values())

    def record(what: str, fn) -> None:
        before = calls()
        t0 = time.perf_counter()
        status = fn()
        steps.append(Step(what, status, (time.perf_counter() - t0) * 1000, calls() - before))

    def ask(question: str, **kwargs):
        def run() -> str:
            raw = chat.with_raw_response.create(
                model="gpt-4o-mini", messages=[
                    {"role": "system", "content": "You are a concise assistant."},
                    {"role": "user", "content": question}], **kwargs)
            raw.parse()
            return raw.headers.get("x-hitrate-cache", "?")
        return run

    def ask_stream(question: str):
        def run() -> str:
            with chat.with_streaming_response.create(
                    model="gpt-4o-mini", stream=True,
                    messages=[{"role": "user", "content": question}]) as response:
                for _ in response.iter_lines():
                    pass
                return response.headers.get("x-hitrate-cache", "?")
        return run

    q = "What is the capital of France?"
    record("ask a question", ask(q))
    record("same question again", ask(q))
    record("temperature=0.70: a parameter changes the key", ask(q, temperature=0.70))
    record("temperature=0.7: same value, other spelling", ask(q, temperature=0.7))
    record("temperature=1.0: another value, another key", ask(q, temperature=1.0))
    record("streamed question", ask_stream("Explain HTTP caching in one line."))
    record("same, streamed: replayed as a stream", ask_stream("Explain HTTP caching in one line."))
    record("no-store request", ask("Tell me a random number.", extra_body={"cache": {"no-store": True}}))
    record("no-store again: nothing was kept", ask("Tell me a random number."))
    record("no-cache: forces a fresh answer", ask(q, extra_body={"cache": {"no-cache": True}}))
    record("s-maxage=0: only a brand-new entry will do",
           ask(q, extra_body={"cache": {"s-maxage": 0}}))

    async def burst() -> str:
        async_client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="demo")
        replies = await asyncio.gather(*[
            async_client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise RFC 9111."}])
            for _ in range(10)])
        await async_client.close()
        hits = sum(r.headers.get("x-hitrate-cache") == "hit" for r in replies)
        return f"{hits} hit / {10 - hits} miss"

    record("10 identical requests at once (coalesced)", lambda: asyncio.run(burst()))

    if _semantic_available():
        record("什么是人工智能？", ask("什么是人工智能？"))
        record("AI 是什么？ (a paraphrase: semantic hit)", ask("AI 是什么？"))
        record("What is the capital of Germany? (near miss: no hit)",
               ask("What is the capital of Germany?"))

    def embed(texts: list[str]):
        def run() -> str:
            raw = client.embeddings.with_raw_response.create(model="gpt-4o-mini", input=texts)
            raw.parse()
            items = raw.headers.get("x-hitrate-cache-items-hit")
            return f"{raw.headers.get('x-hitrate-cache')} ({items} cached)"
        return run

    record("embed 2 texts", embed(["apples", "pears"]))
    record("embed 3 texts, 2 seen before", embed(["apples", "pears", "plums"]))

    def respond(question: str):
        def run() -> str:
            raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input=question)
            raw.parse()
            return raw.headers.get("x-hitrate-cache", "?")
        return run

    def message(question: str):
        # Anthropic's Messages API, as its SDK sends it (x-api-key, anthropic-version).
        def run() -> str:
            reply = httpx.post(f"{gateway_url}/v1/messages", timeout=30, headers={
                "x-api-key": "demo", "anthropic-version": "2023-06-01"}, json={
                "model": "gpt-4o-mini", "max_tokens": 256,
                "messages": [{"role": "user", "content": question}]})
            return reply.headers.get("x-hitrate-cache", "?")
        return run

    record("Responses API: a question", respond("Name three HTTP cache headers."))
    record("Responses API: same question", respond("Name three HTTP cache headers."))
    record("Anthropic Messages API: a question", message("What does ETag mean?"))
    record("Anthropic Messages API: same question", message("What does ETag mean?"))
    return steps


def _report(console: Console, steps: list[Step]) -> None:
    table = Table(title="What happened", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("request")
    table.add_column("cache")
    table.add_column("latency", justify="right")
    table.add_column("upstream calls", justify="right")
    colors = {"hit": "green", "miss": "yellow", "bypass": "cyan"}
    for i, step in enumerate(steps, 1):
        color = colors.get(step.status.split(" ")[0], "white")
        table.add_row(str(i), step.what, f"[{color}]{step.status}[/]", f"{step.ms:,.1f} ms",
                      str(step.upstream_calls))
    console.print(table)
    hits = [s for s in steps if s.status == "hit"]
    misses = [s for s in steps if s.status != "hit" and s.upstream_calls]
    requests = len(steps) + 9 + 2  # the burst is 10 requests, the embed steps 2 batches
    upstream = sum(s.upstream_calls for s in steps)
    hit_ms = sorted(s.ms for s in hits)
    miss_ms = sorted(s.ms for s in misses)
    console.print(
        f"\n[bold]{requests}[/] requests, [bold]{upstream}[/] reached the provider "
        f"({requests - upstream} answered by hitrate).  "
        f"Median hit {hit_ms[len(hit_ms) // 2]:.1f} ms vs median miss "
        f"{miss_ms[len(miss_ms) // 2]:.0f} ms."
    )
    console.print("Run your own: [bold]hitrate serve --config config.yaml[/] and point the "
                  "OpenAI SDK at http://127.0.0.1:4000/v1")
