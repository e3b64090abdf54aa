"""Cache backends compared through the gateway: hit latency, hit throughput and the cost a
backend adds to a miss, for every store type, on real servers started here.

Prints one JSON line. Usage: python benchmarks/backends.py [--seconds 3] [--hits 1000]
    [--only redis,s3,...]

Processes: each backend server (redis-server standalone / 3-master Cluster / master +
replica + Sentinel, moto_server, fake-gcs-server, Azurite), the simulated upstream
(`benchmarks/gateway.py _upstream`, zero latency), one gateway per backend
(`hitrate serve`, uvicorn, one worker) and the load generator
(`benchmarks/gateway.py _loadgen`, asyncio, keep-alive). This process is the
concurrency-1 client (a raw keep-alive HTTP/1.1 socket). The servers come from
scripts/test_deps.sh and the `test` extra, and are started with the test suite's helpers
(tests/backends/conftest.py).

Per backend:
  hit_p50_ms / hit_p99_ms  `--hits` identical chat requests at concurrency 1, after one
                           miss and 100 warm-up hits; each response checked to be a hit
  hit_rps                  the load generator, 16 connections, `--seconds`, same request
  miss_p50_ms              300 never-seen prompts at concurrency 1 (lookup + upstream +
                           store); compare with `memory` for what the backend adds
On the 2-core CI-size machine the gateway, the backend server and the client share the
cores, so the numbers are for comparison on one machine, not absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from gateway import RawClient, _ms, _request_bytes  # noqa: E402 - benchmarks/gateway.py
from tests.backends.conftest import (  # noqa: E402
    AZURITE_KEY,
    Servers,
    fake_gcs_binary,
    free_port,
    start_cluster,
    start_sentinel_set,
)

PY = sys.executable
BUCKET = "hitrate-bench"
HIT_BODY = json.dumps({"model": "gpt-bench", "messages": [
    {"role": "user", "content": "What is the capital of France?"}]}, separators=(",", ":"))


def start_backends(servers: Servers, only: set[str]) -> dict[str, dict[str, Any]]:
    """cache config per backend name, starting only the servers those need."""
    configs: dict[str, dict[str, Any]] = {
        "memory": {"type": "memory"},
        "disk": {"type": "disk", "disk_cache_dir": str(servers.root / "disk")},
    }
    want = lambda *names: any(n in only for n in names) or not only  # noqa: E731
    if want("redis", "tiered-redis"):
        redis = servers.redis()
        configs["redis"] = {"type": "redis", "redis": {"url": redis.url}}
        configs["tiered-redis"] = {"type": "tiered", "redis": {"url": redis.url}}
    if want("redis-cluster"):
        cluster = start_cluster(servers)
        configs["redis-cluster"] = {"type": "redis-cluster",
                                    "redis": {"startup_nodes": cluster.startup_nodes}}
    if want("redis-sentinel"):
        sentinels = start_sentinel_set(servers)
        configs["redis-sentinel"] = {"type": "redis-sentinel", "redis": {
            "sentinel_nodes": [f"127.0.0.1:{sentinels.sentinel_port}"],
            "service_name": sentinels.service}}
    if want("s3", "tiered-s3"):
        port = free_port()
        servers.add([str(Path(PY).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                    lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500,
                    "moto")
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="x").create_bucket(Bucket=BUCKET)
        s3 = {"bucket": BUCKET, "endpoint_url": f"http://127.0.0.1:{port}", "region": "us-east-1",
              "access_key_id": "x", "secret_access_key": "x"}
        configs["s3"] = {"type": "s3", "s3": s3}
        configs["tiered-s3"] = {"type": "tiered", "tiered": {"l2": "s3"}, "s3": s3}
    if want("gcs"):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        servers.add([str(fake_gcs_binary()), "-scheme", "http", "-backend", "memory", "-host",
                     "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "error"],
                    lambda: httpx.get(f"{url}/storage/v1/b", timeout=1).status_code == 200, "gcs")
        httpx.post(f"{url}/storage/v1/b?project=bench", json={"name": BUCKET}).raise_for_status()
        configs["gcs"] = {"type": "gcs", "gcs": {"bucket": BUCKET, "api_root": url}}
    if want("azure-blob"):
        port = free_port()
        script = HERE.parent / ".test-deps/azurite/node_modules/azurite/dist/src/blob/main.js"
        servers.add(["node", str(script), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                     "--silent", "--skipApiVersionCheck", "--loose", "--inMemoryPersistence"],
                    lambda: httpx.get(f"http://127.0.0.1:{port}/devstoreaccount1?comp=list",
                                      timeout=1).status_code < 500, "azurite")
        conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(conn) as service:
            service.create_container(BUCKET)
        configs["azure-blob"] = {"type": "azure-blob",
                                 "azure_blob": {"container": BUCKET, "connection_string": conn}}
    return {name: c for name, c in configs.items() if not only or name in only}


def measure(name: str, cache: dict[str, Any], upstream_port: int, servers: Servers,
            hits: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    config = {"models": [{"name": "gpt-bench", "model": "sim",
                          "api_base": f"http://127.0.0.1:{upstream_port}/v1"}],
              "cache": {**cache, "ttl": 3600, "namespace": f"bench-{name}"}}
    config_file = servers.root / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    gateway = servers.add([str(Path(PY).parent / "hitrate"), "serve", "--config", str(config_file),
                           "--port", str(port)],
                          lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                          .status_code == 200, f"gateway-{name}")
    try:
        client = RawClient(port)
        request = _request_bytes("POST", "/v1/chat/completions", port, HIT_BODY.encode())
        deadline = time.monotonic() + 5  # the first answer is stored after it is sent
        while b"x-hitrate-cache: hit" not in client.send(request)[1].lower():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no hit after the first request was stored")
            time.sleep(0.01)
        latencies = []
        for i in range(100 + hits):
            t0 = time.perf_counter()
            status, head, _ = client.send(request)
            elapsed = time.perf_counter() - t0
            if status != 200 or b"x-hitrate-cache: hit" not in head.lower():
                raise RuntimeError(f"{name}: request {i} was not a hit: {head[:300]!r}")
            if i >= 100:
                latencies.append(elapsed)
        misses = []
        for i in range(300):
            body = json.dumps({"model": "gpt-bench", "messages": [
                {"role": "user", "content": f"never seen {name} {i} {time.time_ns()}"}]})
            t0 = time.perf_counter()
            status, head, _ = client.send(_request_bytes("POST", "/v1/chat/completions", port,
                                                         body.encode()))
            misses.append(time.perf_counter() - t0)
            assert status == 200 and b"x-hitrate-cache: miss" in head.lower(), head[:300]
        client.close()
        load = subprocess.run([PY, str(HERE / "gateway.py"), "_loadgen", str(port), HIT_BODY,
                               "16", str(seconds)], capture_output=True, text=True, check=True,
                              timeout=seconds + 60)
        throughput = json.loads(load.stdout.strip().splitlines()[-1])
        hit = _ms(latencies)
        return {"hit_p50_ms": hit["p50_ms"], "hit_p99_ms": hit["p99_ms"],
                "hit_rps": round(throughput["rps"]), "hit_non_2xx": throughput["non_2xx"],
                "miss_p50_ms": _ms(misses)["p50_ms"], **backend_errors(port)}
    finally:
        gateway.kill()


def backend_errors(port: int) -> dict[str, Any]:
    """Backend errors and misses over the whole run (a timeout under load would show here:
    the load generator itself only checks for 200s)."""
    response = httpx.get(f"http://127.0.0.1:{port}/cache/stats", timeout=5)
    if response.status_code != 200:
        return {}
    stats = response.json()
    return {"backend_errors": stats.get("backend", {}).get("errors"),
            "misses": stats.get("cache", {}).get("misses")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated backend names")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    with tempfile.TemporaryDirectory(prefix="hitrate-bench-") as tmp:
        servers = Servers(Path(tmp))
        try:
            upstream_port = free_port()
            servers.add([PY, str(HERE / "gateway.py"), "_upstream", str(upstream_port)],
                        lambda: httpx.get(f"http://127.0.0.1:{upstream_port}/v1/models",
                                          timeout=1).status_code == 200, "upstream")
            configs = start_backends(servers, only)
            results = {name: measure(name, cache, upstream_port, servers, args.hits, args.seconds)
                       for name, cache in configs.items()}
        finally:
            servers.close()
    print(json.dumps({"level": "gateway (hitrate serve, uvicorn, 1 worker)", "cpus": os.cpu_count(),
                      "hits_per_backend": args.hits, "load_seconds": args.seconds,
                      "load_connections": 16, "backends": results}))


if __name__ == "__main__":
    main()
