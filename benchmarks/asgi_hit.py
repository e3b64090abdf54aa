"""CPU time of one cache hit through the whole ASGI app (middleware, routing, auth, proxy,
engine), without sockets: the app is called with a prepared HTTP scope. Runs against any
checkout, so two trees can be compared on one machine:

    python benchmarks/asgi_hit.py [--n 5000] [--rounds 5]
    PYTHONPATH=<other checkout>/src python benchmarks/asgi_hit.py

Prints one JSON line: the best round's mean, in µs of process CPU time per hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import orjson

from hitrate.config import parse_config
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from hitrate.simulator import SimulatorState, create_simulator

BODY = orjson.dumps({"model": "gpt-bench", "messages": [
    {"role": "user", "content": "What is the capital of France?"}]})


async def measure(n: int, rounds: int) -> dict[str, Any]:
    with BackgroundServer(create_simulator(SimulatorState())) as upstream:
        app = create_app(parse_config({"models": [
            {"name": "gpt-bench", "api_base": f"{upstream.url}/v1", "api_key": "k"}]}))
        async with app.router.lifespan_context(app):
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                     "raw_path": b"/v1/chat/completions", "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 2), "app": app,
                     "headers": [(b"content-type", b"application/json"), (b"host", b"x"),
                                 (b"content-length", str(len(BODY)).encode())]}
            statuses: list[bytes] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": BODY, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.extend(v for k, v in message["headers"] if k == b"x-hitrate-cache")

            await app(dict(scope), receive, send)  # the miss that stores the answer
            means = []
            for _ in range(rounds):
                statuses.clear()
                started = time.process_time()
                for _ in range(n):
                    await app(dict(scope), receive, send)
                means.append((time.process_time() - started) / n * 1e6)
                if statuses.count(b"hit") != n:
                    raise RuntimeError("expected only hits")
    return {"benchmark": "asgi_hit", "n": n, "rounds": rounds,
            "hit_cpu_us_best": round(min(means), 1),
            "hit_cpu_us_rounds": [round(m, 1) for m in means]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.n, args.rounds))))


if __name__ == "__main__":
    main()
