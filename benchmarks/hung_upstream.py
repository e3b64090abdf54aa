"""A healthy model's miss latency while N requests wait on a hung upstream (issue: one
hung provider starved the others). Three processes: `hitrate serve`, the simulated
upstream (`benchmarks/gateway.py _upstream`), and this one (the clients, and a TCP
server that accepts connections but never answers).

Usage: python benchmarks/hung_upstream.py [WAITING=600] [MAX_CONNECTIONS=256]
Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def hung_server() -> tuple[int, list[socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], held


async def measure(url: str, waiting: int, held: list[socket.socket]) -> dict:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120,
                                http_client=httpx.AsyncClient(
                                    limits=httpx.Limits(max_connections=waiting + 10),
                                    timeout=120))
    started = time.perf_counter()
    hung = [asyncio.ensure_future(client.chat.completions.create(
        model="hung", messages=[{"role": "user", "content": f"stuck {i}"}]))
        for i in range(waiting)]
    async with httpx.AsyncClient(timeout=120) as probe:
        while (await probe.get(f"{url}/cache/stats")).json()["cache"]["misses"] < waiting:
            await asyncio.sleep(0.2)
        ramp = time.perf_counter() - started
        samples = []
        for i in range(5):
            t0 = time.perf_counter()
            reply = await probe.post(f"{url}/v1/chat/completions", json={
                "model": "gpt-test", "messages": [{"role": "user", "content": f"healthy {i}"}]})
            assert reply.status_code == 200 and reply.headers["x-hitrate-cache"] == "miss"
            samples.append(round((time.perf_counter() - t0) * 1000, 1))
    for task in hung:
        task.cancel()
    await asyncio.gather(*hung, return_exceptions=True)
    return {"hung_connections_held": len(held), "seconds_until_all_waiting": round(ramp, 2),
            "healthy_miss_ms": samples, "healthy_miss_median_ms": sorted(samples)[2]}


def main() -> None:
    waiting = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    pool = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    hung_port, held = hung_server()
    upstream_port, port = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).with_name("gateway.py")),
                               "_upstream", str(upstream_port)])]
    config = {"models": [
        {"name": "gpt-test", "api_base": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "k"},
        {"name": "hung", "api_base": f"http://127.0.0.1:{hung_port}/v1", "api_key": "k",
         "timeout": 120, "max_connections": pool}],
        "server": {"host": "127.0.0.1", "port": port}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(json.dumps(config))  # JSON is YAML
    procs.append(subprocess.Popen([sys.executable, "-m", "hitrate", "serve", "--config",
                                   file.name], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"http://127.0.0.1:{upstream_port}/v1/models")
        wait_up(f"{url}/health")
        result = asyncio.run(measure(url, waiting, held))
    finally:
        for proc in procs:
            proc.terminate()
    print(json.dumps({"benchmark": "hung_upstream", "waiting_on_hung": waiting,
                      "max_connections": pool, **result}))


if __name__ == "__main__":
    main()
