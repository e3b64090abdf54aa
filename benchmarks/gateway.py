"""Gateway speed, measured from outside: hit latency, hit throughput, miss overhead,
startup time and import time, with the default in-memory cache and one worker; and
hit p50 / hits per second for each endpoint kind (chat, Responses, Anthropic Messages).

Prints one JSON line. Usage: python benchmarks/gateway.py [--seconds 6] [--no-pin]
    [--loadgen auto|wrk|python] [--no-granian] [--tracing off|otlp]

Processes (none shares an interpreter with another):
  * the simulated upstream: `python benchmarks/gateway.py _upstream PORT` (uvicorn,
    zero simulated latency);
  * the gateway: `hitrate serve --config TMP.yaml` (uvicorn, uvloop + httptools), and
    for comparison granian serving the same app through `granian_app()` below;
  * the load generator: `wrk` (one thread, 32 connections, Lua script for the POST),
    or when wrk is missing `python benchmarks/gateway.py _loadgen ...` (asyncio);
  * this process: the concurrency-1 client, a raw keep-alive HTTP/1.1 socket client
    (an httpx sync client is measured too, for reference).

On a machine with 2+ CPUs the server is pinned to CPU 0 and the load generator, the
client and the upstream to CPU 1 (`--no-pin` turns this off), so "one worker" means
one core and the load generator does not steal it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
MODEL = "gpt-bench"
HIT_BODY = json.dumps({"model": MODEL, "messages": [
    {"role": "user", "content": "What is the capital of France?"}]}, separators=(",", ":"))
CONNECTIONS = 32
CHAT_PATH = "/v1/chat/completions"
# One cached request per endpoint kind: (path, body).
KIND_REQUESTS = {
    "chat": (CHAT_PATH, HIT_BODY),
    "responses": ("/v1/responses", json.dumps(
        {"model": MODEL, "input": "What is the capital of France?"}, separators=(",", ":"))),
    "messages": ("/v1/messages", json.dumps(
        {"model": MODEL, "max_tokens": 64, "messages": [
            {"role": "user", "content": "What is the capital of France?"}]},
        separators=(",", ":"))),
}
TARGETS = {"hit_p50_ms": 1.0, "hit_throughput_rps": 3000, "miss_overhead_ms": 2.0,
           "startup_s": 1.0, "import_hitrate_ms": 150}


# -- helper roles (run as subprocesses of the benchmark) ---------------------------


def granian_app():
    """Factory for granian: the gateway for the config at $HITRATE_BENCH_CONFIG."""
    from hitrate.config import load_config
    from hitrate.gateway.app import create_app

    return create_app(load_config(os.environ["HITRATE_BENCH_CONFIG"]))


def run_upstream(port: int) -> None:
    from hitrate.serving import serve
    from hitrate.simulator import create_simulator

    serve(create_simulator(), "127.0.0.1", port)


def run_collector(port: int) -> None:
    """A stand-in OTLP/HTTP trace receiver (`--tracing otlp`): accepts every export, so
    the gateway pays the real cost of building, batching and sending spans."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    received = {"exports": 0, "bytes": 0}

    async def traces(request: Any) -> Response:
        received["exports"] += 1
        received["bytes"] += len(await request.body())
        return Response(b"", 200, media_type="application/x-protobuf")

    async def stats(request: Any) -> Response:
        return Response(json.dumps(received), 200, media_type="application/json")

    from hitrate.serving import serve

    serve(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]),
                            Route("/stats", stats)]), "127.0.0.1", port)


def run_loadgen(port: int, body: str, connections: int, seconds: float,
                path: str = CHAT_PATH) -> None:
    """Fallback load generator: asyncio raw HTTP/1.1 keep-alive connections."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    request = _request_bytes("POST", path, port, body.encode())

    async def worker(deadline: float, latencies: list[float], errors: Counter[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(_header(head, b"content-length") or b"0")
                await reader.readexactly(length)
                if head[9:12] != b"200":
                    errors[head[9:12].decode()] += 1
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(deadline, latencies, errors) for _ in range(connections)))
        elapsed = time.perf_counter() - started
        latencies.sort()
        return {"requests": len(latencies), "rps": len(latencies) / elapsed,
                "p50_ms": _pct(latencies, 50) * 1000, "p99_ms": _pct(latencies, 99) * 1000,
                "non_2xx": sum(errors.values())}

    print(json.dumps(asyncio.run(main())))


# -- raw HTTP/1.1 ---------------------------------------------------------------------


def _request_bytes(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _header(head: bytes, name: bytes) -> bytes | None:
    match = re.search(rb"\r\n" + name + rb":\s*([^\r]*)", head, re.IGNORECASE)
    return match.group(1) if match else None


class RawClient:
    """Minimal keep-alive HTTP/1.1 client on a blocking socket (Content-Length only)."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, request: bytes) -> tuple[int, bytes, bytes]:
        self.sock.sendall(request)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        head, buf = buf[:end], buf[end + 4:]
        length = _header(head, b"content-length")
        if length is None:
            raise RuntimeError(f"response without content-length: {head[:200]!r}")
        n = int(length)
        while len(buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        self.buf = buf[n:]
        return int(head[9:12]), head, buf[:n]

    def close(self) -> None:
        self.sock.close()


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def _ms(values_s: list[float]) -> dict[str, float]:
    values = sorted(values_s)
    return {"p50_ms": round(_pct(values, 50) * 1000, 3),
            "p99_ms": round(_pct(values, 99) * 1000, 3),
            "mean_ms": round(statistics.fmean(values) * 1000, 3), "n": len(values)}


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every subprocess we start, each in its own session; all stopped on exit."""

    def __init__(self, logdir: Path, pin: bool):
        self.logdir = logdir
        self.pin = pin
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], cpu: int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.logdir / f"{name}.{len(self.procs)}.log"
        cpus = {cpu} if self.pin and cpu is not None else None

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent,
                                    env={**os.environ, **(env or {})}, start_new_session=True,
                                    preexec_fn=pin if cpus else None)
        self.procs.append((proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 8.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # granian's worker is a child in the same session: make sure it is gone too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, proc: subprocess.Popen[bytes]) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")[-2000:]
        return ""

    def stop_all(self) -> None:
        for proc, _ in reversed(self.procs):
            self.stop(proc)


def wait_health(port: int, proc: subprocess.Popen[bytes], path: str, procs: Processes,
                timeout: float = 30.0) -> float:
    """Poll GET `path` until 200; returns time.perf_counter() of the first 200."""
    request = _request_bytes("GET", path, port)
    deadline = time.perf_counter() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{procs.log_tail(proc)}")
        try:
            client = RawClient(port)
            try:
                status, _, _ = client.send(request)
            finally:
                client.close()
            if status == 200:
                return time.perf_counter()
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no 200 from {path} in {timeout}s:\n{procs.log_tail(proc)}")
        time.sleep(0.002)


def hitrate_argv() -> list[str]:
    script = Path(PY).with_name("hitrate")
    if script.exists():
        return [str(script)]
    return [PY, "-c", "from hitrate.cli import main; main()"]


def start_uvicorn_gateway(procs: Processes, config: Path, port: int) -> tuple[Any, float]:
    started = time.perf_counter()
    proc = procs.start("gateway-uvicorn", [*hitrate_argv(), "serve", "--config", str(config),
                                           "--port", str(port)], cpu=0)
    ready = wait_health(port, proc, "/health", procs)
    return proc, ready - started


def start_granian_gateway(procs: Processes, config: Path, port: int) -> tuple[Any, float]:
    granian = Path(PY).with_name("granian")
    argv = [str(granian), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--http", "1",
            "--no-ws", "--log-level", "warning", "--no-access-log", "--factory",
            "--working-dir", str(HERE), "gateway:granian_app"]
    started = time.perf_counter()
    proc = procs.start("gateway-granian", argv, cpu=0, env={"HITRATE_BENCH_CONFIG": str(config)})
    ready = wait_health(port, proc, "/health", procs)
    return proc, ready - started


# -- measurements ---------------------------------------------------------------------


def measure_hits(port: int, n: int = 3000, warmup: int = 300, path: str = CHAT_PATH,
                 body: str = HIT_BODY) -> dict[str, Any]:
    request = _request_bytes("POST", path, port, body.encode())
    client = RawClient(port)
    try:
        status, head, _ = client.send(request)  # the miss that stores the answer
        if status != 200:
            raise RuntimeError(f"warm-up request failed: {status} {head!r}")
        for _ in range(warmup):
            client.send(request)
        samples = []
        statuses: Counter[str] = Counter()
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            status, head, _ = client.send(request)
            samples.append(clock() - t0)
            statuses[(_header(head, b"x-hitrate-cache") or b"?").decode()] += 1
    finally:
        client.close()
    if statuses.get("hit") != n:
        raise RuntimeError(f"expected only hits, got {dict(statuses)}")
    return _ms(samples)


def measure_hits_httpx(port: int, n: int = 1000) -> dict[str, Any]:
    import httpx

    samples = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        headers = {"content-type": "application/json"}
        for i in range(n + 100):
            t0 = time.perf_counter()
            response = client.post("/v1/chat/completions", content=HIT_BODY, headers=headers)
            elapsed = time.perf_counter() - t0
            if response.headers.get("x-hitrate-cache") != "hit":
                raise RuntimeError("httpx client: expected a hit")
            if i >= 100:
                samples.append(elapsed)
    return _ms(samples)


def measure_misses(gateway_port: int, upstream_port: int, n: int = 600,
                   warmup: int = 60) -> dict[str, Any]:
    """Interleaved pairs: a never-seen prompt via the gateway, another straight upstream."""
    gateway, upstream = RawClient(gateway_port), RawClient(upstream_port)
    via, direct = [], []
    statuses: Counter[str] = Counter()
    run = f"{os.getpid()}-{time.time_ns()}"
    try:
        for i in range(warmup + n):
            bodies = [json.dumps({"model": MODEL, "messages": [
                {"role": "user", "content": f"Unique question {run}-{side}-{i}?"}]},
                separators=(",", ":")).encode() for side in ("g", "d")]
            g_req = _request_bytes("POST", "/v1/chat/completions", gateway_port, bodies[0])
            d_req = _request_bytes("POST", "/v1/chat/completions", upstream_port, bodies[1])
            t0 = time.perf_counter()
            g_status, head, _ = gateway.send(g_req)
            t1 = time.perf_counter()
            d_status, _, _ = upstream.send(d_req)
            t2 = time.perf_counter()
            if g_status != 200 or d_status != 200:
                raise RuntimeError(f"miss run: gateway {g_status}, upstream {d_status}")
            if i >= warmup:
                via.append(t1 - t0)
                direct.append(t2 - t1)
                statuses[(_header(head, b"x-hitrate-cache") or b"?").decode()] += 1
    finally:
        gateway.close()
        upstream.close()
    if statuses.get("miss") != n:
        raise RuntimeError(f"expected only misses, got {dict(statuses)}")
    via_ms, direct_ms = _ms(via), _ms(direct)
    return {"via_gateway": via_ms, "direct_upstream": direct_ms,
            "overhead_p50_ms": round(via_ms["p50_ms"] - direct_ms["p50_ms"], 3)}


def upstream_calls(port: int) -> int:
    client = RawClient(port)
    try:
        _, _, body = client.send(_request_bytes("GET", "/_stats", port))
    finally:
        client.close()
    return int(json.loads(body)["total"])


def _wrk_ms(text: str, pct: str) -> float | None:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return round(float(match.group(1)) * scale, 3)


def load_wrk(procs: Processes, port: int, seconds: float, workdir: Path,
             path: str = CHAT_PATH, body: str = HIT_BODY) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{body}]==]\n")
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", str(script),
            f"http://127.0.0.1:{port}{path}"]
    proc = procs.start("wrk", argv, cpu=1)
    if proc.wait(seconds + 30) != 0:
        raise RuntimeError(f"wrk failed:\n{procs.log_tail(proc)}")
    text = procs.log_tail(proc)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    if not rps or not total:
        raise RuntimeError(f"cannot parse wrk output:\n{text}")
    return {"rps": round(float(rps.group(1))), "requests": int(total.group(1)),
            "p50_ms": _wrk_ms(text, "50"), "p99_ms": _wrk_ms(text, "99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else None}


def load_python(procs: Processes, port: int, seconds: float, path: str = CHAT_PATH,
                body: str = HIT_BODY) -> dict[str, Any]:
    proc = procs.start("loadgen", [PY, str(Path(__file__).resolve()), "_loadgen", str(port),
                                   body, str(CONNECTIONS), str(seconds), path], cpu=1)
    if proc.wait(seconds + 60) != 0:
        raise RuntimeError(f"load generator failed:\n{procs.log_tail(proc)}")
    result = json.loads(procs.log_tail(proc).strip().splitlines()[-1])
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    result["rps"] = round(result["rps"])
    return result


def measure_throughput(procs: Processes, port: int, upstream_port: int, seconds: float,
                       loadgen: str, workdir: Path, path: str = CHAT_PATH,
                       body: str = HIT_BODY) -> dict[str, Any]:
    run: Callable[[float], dict[str, Any]]
    if loadgen == "wrk":
        def run(s: float) -> dict[str, Any]:
            return load_wrk(procs, port, s, workdir, path, body)
    else:
        def run(s: float) -> dict[str, Any]:
            return load_python(procs, port, s, path, body)
    # Store the answer, then warm the server up under load before the timed run.
    client = RawClient(port)
    try:
        client.send(_request_bytes("POST", path, port, body.encode()))
    finally:
        client.close()
    run(1.0)
    calls_before = upstream_calls(upstream_port)
    result = run(seconds)
    result["upstream_calls_during_run"] = upstream_calls(upstream_port) - calls_before
    if result["non_2xx"] or result["upstream_calls_during_run"]:
        raise RuntimeError(f"load run was not all hits: {result}")
    return result


def _median_run(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, cwd=HERE.parent)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _importtime_ms(module: str) -> float:
    out = subprocess.run([PY, "-X", "importtime", "-c", f"import {module}"], check=True,
                         capture_output=True, text=True, cwd=HERE.parent).stderr
    for line in out.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return round(int(parts[1]) / 1000, 1)
    raise RuntimeError(f"{module} not in -X importtime output")


def measure_imports(runs: int = 9) -> dict[str, Any]:
    bare = _median_run([PY, "-c", "pass"], runs)
    result: dict[str, Any] = {"python_startup_ms": round(bare * 1000, 1)}
    for name, module in (("hitrate", "hitrate"), ("gateway_app", "hitrate.gateway.app"),
                         ("cli", "hitrate.cli")):
        with_import = _median_run([PY, "-c", f"import {module}"], runs)
        result[f"{name}_subprocess_minus_bare_ms"] = round((with_import - bare) * 1000, 1)
        result[f"{name}_importtime_cumulative_ms"] = _importtime_ms(module)
    return result


# -- main -----------------------------------------------------------------------------


def write_config(path: Path, upstream_port: int, collector_port: int | None = None) -> None:
    config: dict[str, Any] = {
        "models": [{"name": MODEL, "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "sk-bench"}],
        "server": {"host": "127.0.0.1", "port": 0}}
    if collector_port is not None:
        config["tracing"] = {"enabled": True, "exporter": "otlp",
                             "endpoint": f"http://127.0.0.1:{collector_port}"}
    path.write_text(json.dumps(config))  # JSON is YAML


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP -> SystemExit, so `finally` blocks stop the subprocesses."""
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed load run per server")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--no-granian", action="store_true")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--tracing", choices=["off", "otlp"], default="off",
                        help="otlp: trace every request to a local stand-in OTLP receiver")
    args = parser.parse_args()

    began = time.perf_counter()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(affinity) >= 2
    if pin:
        os.sched_setaffinity(0, {affinity[1]})  # this process (the c=1 client) shares CPU 1
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    has_granian = Path(PY).with_name("granian").exists() and not args.no_granian

    result: dict[str, Any] = {"benchmark": "gateway", "server": "uvicorn",
                              "cache": "memory (default config)", "tracing": args.tracing}
    with tempfile.TemporaryDirectory(prefix="hitrate-bench-") as tmp, terminate_as_exit():
        workdir = Path(tmp)
        procs = Processes(workdir, pin)
        try:
            # CPU 1: the upstream is idle during the hit runs and alone with the client
            # (sequential, concurrency 1) during the miss run.
            upstream_port = free_port()
            upstream = procs.start("upstream", [PY, str(Path(__file__).resolve()), "_upstream",
                                                str(upstream_port)], cpu=1)
            wait_health(upstream_port, upstream, "/v1/models", procs)
            collector_port = None
            if args.tracing == "otlp":
                collector_port = free_port()
                collector = procs.start("collector", [PY, str(Path(__file__).resolve()),
                                                      "_collector", str(collector_port)], cpu=1)
                wait_health(collector_port, collector, "/stats", procs)
            config = workdir / "hitrate.yaml"
            write_config(config, upstream_port, collector_port)

            startups = []
            for _ in range(max(0, args.startup_runs - 1)):
                proc, seconds = start_uvicorn_gateway(procs, config, free_port())
                procs.stop(proc)
                startups.append(seconds)
            port = free_port()
            gateway, seconds = start_uvicorn_gateway(procs, config, port)
            startups.append(seconds)

            hits = measure_hits(port)
            hits_httpx = measure_hits_httpx(port)
            misses = measure_misses(port, upstream_port)
            uvicorn_load = measure_throughput(procs, port, upstream_port, args.seconds, loadgen,
                                              workdir)
            per_kind = {}
            for kind, (path, body) in KIND_REQUESTS.items():
                kind_hits = measure_hits(port, n=2000, path=path, body=body)
                kind_load = measure_throughput(procs, port, upstream_port, args.seconds / 2,
                                               loadgen, workdir, path, body)
                per_kind[kind] = {"hit_p50_ms": kind_hits["p50_ms"],
                                  "hit_p99_ms": kind_hits["p99_ms"], "hits_per_s": kind_load["rps"]}
            chat_row = per_kind["chat"]
            for row in per_kind.values():
                row["hits_per_s_vs_chat"] = round(row["hits_per_s"] / chat_row["hits_per_s"], 3)
            procs.stop(gateway)  # flushes its last spans
            if collector_port is not None:
                import httpx

                result["otlp_received"] = httpx.get(
                    f"http://127.0.0.1:{collector_port}/stats").json()

            granian_load = None
            granian_startup = None
            granian_hits = None
            if has_granian:
                port = free_port()
                gateway, granian_startup = start_granian_gateway(procs, config, port)
                granian_hits = measure_hits(port, n=2000)
                granian_load = measure_throughput(procs, port, upstream_port, args.seconds,
                                                  loadgen, workdir)
                procs.stop(gateway)
        finally:
            procs.stop_all()
    imports = measure_imports()

    result.update({
        "hit_p50_ms": hits["p50_ms"],
        "hit_p99_ms": hits["p99_ms"],
        "hit_throughput_rps": uvicorn_load["rps"],
        "miss_overhead_ms": misses["overhead_p50_ms"],
        "startup_s": round(statistics.median(startups), 3),
        "import_hitrate_ms": imports["hitrate_subprocess_minus_bare_ms"],
        "uvicorn_hit_rps": uvicorn_load["rps"],
        "granian_hit_rps": granian_load["rps"] if granian_load else None,
        "client": "raw-socket keep-alive HTTP/1.1 client, same process for every c=1 "
                  "measurement; separate process from gateway and upstream",
        "hit_c1": hits,
        "hit_c1_httpx_sync_client": hits_httpx,
        "miss_c1": misses,
        "loadgen": (f"wrk -t1 -c{CONNECTIONS} -d{args.seconds:g}s (Lua POST body)"
                    if loadgen == "wrk" else
                    f"python asyncio raw-socket load generator, {CONNECTIONS} connections, "
                    f"{args.seconds:g}s, separate process"),
        "uvicorn_load": uvicorn_load,
        "per_kind": per_kind,
        "per_kind_method": "same gateway; c=1 hit p50/p99 over 2000 raw-socket requests, "
                           "hits/s from a load run of half --seconds, one kind at a time",
        "granian_load": granian_load,
        "granian_hit_c1": granian_hits,
        "granian_startup_s": round(granian_startup, 3) if granian_startup else None,
        "granian_options": "--interface asgi --workers 1 --runtime-threads 1 --loop uvloop "
                           "--http 1 (factory gateway:granian_app)" if has_granian else None,
        "startup_runs_s": [round(s, 3) for s in startups],
        "startup_method": "`hitrate serve --config` subprocess launch -> first 200 from "
                          "GET /health (polled every 2 ms); median of runs",
        "imports": imports,
        "import_method": "median wall time of `python -c 'import hitrate'` minus "
                         "`python -c pass` subprocesses (9 runs each); -X importtime "
                         "cumulative figures alongside",
        "cpu": {"count": os.cpu_count(), "affinity": affinity,
                "pinning": "server CPU 0; load generator, c=1 client, upstream CPU 1"
                           if pin else "none",
                "note": f"{os.cpu_count()} cores shared by load generator and server "
                        "(and the upstream); one server worker"},
        "targets": TARGETS,
        "python": sys.version.split()[0],
        "elapsed_s": round(time.perf_counter() - began, 1),
    })
    result["targets_met"] = {
        "hit_p50_ms": result["hit_p50_ms"] <= TARGETS["hit_p50_ms"],
        "hit_throughput_rps": result["hit_throughput_rps"] >= TARGETS["hit_throughput_rps"],
        "miss_overhead_ms": result["miss_overhead_ms"] <= TARGETS["miss_overhead_ms"],
        "startup_s": result["startup_s"] <= TARGETS["startup_s"],
        "import_hitrate_ms": result["import_hitrate_ms"] <= TARGETS["import_hitrate_ms"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_upstream":
        run_upstream(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_collector":
        run_collector(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        run_loadgen(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                    *sys.argv[6:7])
    else:
        main()
