"""Memory of the gateway under ten concurrent maximum-size request bodies, and under ten
concurrent oversized ones (which the body limit refuses: gateway/limits.py).

Prints one JSON line. Usage: python benchmarks/body_limit.py [--limit-mb 32] [--clients 10]

Processes: the gateway (`python -m hitrate.cli serve --config TMP.yaml`, with the default
in-memory cache); a minimal
upstream in this process that reads each body and answers a short completion (so the
numbers are the gateway's, not an echo of the prompt). RSS is sampled from
/proc/PID/status every 10 ms; `peak_rss_mb` is the largest sample of each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

MB = 1024 * 1024


def _upstream_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        await request.body()
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "ok"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                       "total_tokens": 2}})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _body(size: int, tag: int) -> bytes:
    head = b'{"model":"m","messages":[{"role":"user","content":"%d ' % tag
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _phase(url: str, pid: int, clients: int, make) -> dict:
    statuses: list[int | str] = []
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            response = httpx.post(url + "/v1/chat/completions", content=make(i), timeout=300,
                                  headers={"content-type": "application/json"})
            statuses.append(response.status_code)
            if response.status_code not in (200, 413):
                errors.append(response.text[:300])
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    before = _rss_mb(pid)
    started = time.perf_counter()
    with Sampler(pid) as sampler:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(sampler.peak, 1),
            "rss_after_mb": round(_rss_mb(pid), 1), "seconds": round(time.perf_counter() - started, 2),
            "statuses": sorted(map(str, statuses)), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-mb", type=float, default=32.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--oversize-mb", type=float, default=100.0)
    args = parser.parse_args()

    from hitrate.serving import BackgroundServer

    limit = int(args.limit_mb * MB)
    with BackgroundServer(_upstream_app()) as upstream, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({
            "models": [{"name": "m", "api_base": upstream.url + "/v1"}],
            "server": {"max_request_body_mb": args.limit_mb}}))
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "hitrate.cli", "serve", "--config",
                                 str(config), "--port", str(port)],
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(url + "/health", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            httpx.post(url + "/v1/chat/completions", content=_body(1000, -1), timeout=30)
            idle = _rss_mb(proc.pid)
            at_limit = _phase(url, proc.pid, args.clients, lambda i: _body(limit - 1024, i))

            oversize = int(args.oversize_mb * MB)

            def chunked(i: int) -> Iterator[bytes]:  # no Content-Length: counted as it streams
                body = _body(oversize, 1000 + i)
                for start in range(0, len(body), MB):
                    yield body[start:start + MB]

            over_chunked = _phase(url, proc.pid, args.clients, chunked)
            over_declared = _phase(url, proc.pid, args.clients,
                                   lambda i: _body(oversize, 2000 + i))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"benchmark": "body_limit", "limit_mb": args.limit_mb,
                      "clients": args.clients, "idle_rss_mb": round(idle, 1),
                      "at_limit": at_limit,
                      f"over_{args.oversize_mb:g}mb_chunked": over_chunked,
                      f"over_{args.oversize_mb:g}mb_content_length": over_declared}))


if __name__ == "__main__":
    main()
