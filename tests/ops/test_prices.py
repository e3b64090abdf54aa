"""The price map: bundled and offline by default; refresh (off by default) from a URL or
file, validated, cached as the last good copy; `hitrate costs show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from hitrate.costs import bundled
from tests.conftest import ask
from tests.ops.conftest import MASTER, admin


class FileServer:
    """A local HTTP server for a folder, counting GETs per path."""

    def __init__(self, root: Path):
        self.root = root
        self.gets: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.gets.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def publish(self, name: str, payload: object | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        (self.root / name).write_text(text)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def litellm_style_map(gpt4o_mini_input: float, extra: int = 0) -> dict:
    """A full map in LiteLLM's format (as a user would point us at), with one price changed."""
    doc = {"sample_spec": {"input_cost_per_token": 0, "output_cost_per_token": 0}}
    for name, price in bundled().prices.items():
        doc[name] = {"input_cost_per_token": price.input_cost_per_token,
                     "output_cost_per_token": price.output_cost_per_token,
                     "cache_read_input_token_cost": price.cached_input_cost_per_token,
                     "max_input_tokens": price.max_input_tokens, "litellm_provider": price.provider,
                     "mode": price.mode}
    doc["gpt-4o-mini"]["input_cost_per_token"] = gpt4o_mini_input
    doc["dall-e-3"] = {"mode": "image_generation", "input_cost_per_pixel": 1e-8}  # no token prices
    for i in range(extra):
        doc[f"new-model-{i}"] = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    return doc


def refresh_config(source: str, cache_file: Path, max_age: float = 3600) -> dict:
    return {"source": source, "cache_file": str(cache_file), "max_age": max_age, "timeout": 5}


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def price_of(gateway, model: str) -> dict:
    response = admin(gateway, "GET", f"/costs/models/{model}")
    assert response.status_code == 200, response.text
    return response.json()


def test_refresh_good_then_bad_and_shrunken_maps(make_gateway, files, tmp_path):
    cache_file = tmp_path / "prices-cache.json"
    files.publish("prices.json", litellm_style_map(9e-7, extra=3))
    gateway = make_gateway(master_key=MASTER,
                           costs={"refresh": refresh_config(files.url("prices.json"), cache_file)})
    wait_for(lambda: admin(gateway, "GET", "/costs").json()["refresh"]["last_success"])
    assert price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 9e-7
    assert price_of(gateway, "new-model-2")["output_cost_per_token"] == 2e-6
    assert json.loads(cache_file.read_text())["gpt-4o-mini"]["input_cost_per_token"] == 9e-7
    status = admin(gateway, "GET", "/costs").json()
    assert status["source"] == files.url("prices.json")

    bad_maps = {
        "not JSON": "{ this is not json",
        "not an object": [1, 2, 3],
        "wrong schema": {"schema": "someone.else/9", "models": {}},
        "malformed entries": {f"m{i}": {"input_cost_per_token": "cheap"} for i in range(50)},
        "shrunk by more than half": {k: v for i, (k, v) in
                                     enumerate(litellm_style_map(1e-7).items()) if i < 20},
        "absurd prices": {**litellm_style_map(1e-7),
                          **{f"x{i}": {"input_cost_per_token": 5.0} for i in range(200)}},
    }
    for label, payload in bad_maps.items():
        files.publish("prices.json", payload)
        result = admin(gateway, "POST", "/costs/refresh")
        assert result.status_code == 502, label
        assert result.json()["ok"] is False, label
        # Still the last good map, in memory and on disk.
        assert price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 9e-7, label
        assert json.loads(cache_file.read_text())["gpt-4o-mini"]["input_cost_per_token"] == 9e-7

    files.publish("prices.json", litellm_style_map(1.1e-7))
    assert admin(gateway, "POST", "/costs/refresh").json()["ok"] is True
    assert price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 1.1e-7


def test_shrink_message_names_the_problem(make_gateway, files, tmp_path):
    files.publish("p.json", {"gpt-4o": {"input_cost_per_token": 1e-6,
                                        "output_cost_per_token": 1e-6}})
    gateway = make_gateway(master_key=MASTER, costs={"refresh": refresh_config(
        files.url("p.json"), tmp_path / "c.json")})
    result = admin(gateway, "POST", "/costs/refresh").json()
    assert result["ok"] is False and "shrank by more than half" in result["message"]
    assert admin(gateway, "GET", "/costs").json()["source"] == "bundled"
    assert not (tmp_path / "c.json").exists()


def test_last_good_copy_is_used_at_start_and_refetched_only_when_stale(make_gateway, files,
                                                                         tmp_path):
    cache_file = tmp_path / "prices-cache.json"
    cache_file.write_text(json.dumps(litellm_style_map(7e-7)))
    files.publish("prices.json", litellm_style_map(8e-7))
    config = {"refresh": refresh_config(files.url("prices.json"), cache_file, max_age=3600)}
    fresh = make_gateway(master_key=MASTER, costs=config)
    assert price_of(fresh, "gpt-4o-mini")["input_cost_per_token"] == 7e-7  # from the cache file
    time.sleep(0.3)
    assert files.gets == []  # young enough: no fetch at all

    old = time.time() - 7200
    os.utime(cache_file, (old, old))
    stale = make_gateway(master_key=MASTER, costs=config)
    wait_for(lambda: price_of(stale, "gpt-4o-mini")["input_cost_per_token"] == 8e-7)
    assert files.gets == ["/prices.json"]


def test_refresh_from_a_local_file(make_gateway, tmp_path):
    source = tmp_path / "mine.json"
    source.write_text(json.dumps(litellm_style_map(6e-7)))
    gateway = make_gateway(master_key=MASTER, costs={"refresh": refresh_config(
        str(source), tmp_path / "cache.json")})
    wait_for(lambda: price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 6e-7)


def test_config_overrides_win_over_refreshed_prices(make_gateway, files, tmp_path):
    files.publish("prices.json", litellm_style_map(9e-7))
    gateway = make_gateway(master_key=MASTER, costs={
        "models": {"gpt-4o-mini": {"input_cost_per_token": 1e-9, "output_cost_per_token": 1e-9}},
        "refresh": refresh_config(files.url("prices.json"), tmp_path / "c.json")})
    assert admin(gateway, "POST", "/costs/refresh").json()["ok"] is True
    assert price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 1e-9


def test_unreachable_source_starts_and_serves_on_the_bundled_map(make_gateway, tmp_path):
    # Nothing listens on port 9; `.invalid` never resolves: offline in two ways.
    for source in ("http://127.0.0.1:9/prices.json", "https://prices.example.invalid/p.json"):
        gateway = make_gateway(master_key=MASTER, costs={"refresh": refresh_config(
            source, tmp_path / "never.json")})
        client = gateway.client(api_key=MASTER)
        ask(client, "still fine")
        assert ask(client, "still fine")[0]["x-hitrate-cache"] == "hit"
        wait_for(lambda g=gateway: admin(g, "GET", "/costs").json()["refresh"]["last_error"])
        status = admin(gateway, "GET", "/costs").json()
        assert status["source"] == "bundled" and status["models"] == bundled().distinct_models
        assert price_of(gateway, "gpt-4o")["output_cost_per_token"] > 0


def test_refresh_endpoint_without_refresh_configured(make_gateway):
    gateway = make_gateway(master_key=MASTER)
    assert admin(gateway, "POST", "/costs/refresh").status_code == 409
    assert admin(gateway, "GET", "/costs/models/no-such-model").status_code == 404


NO_NETWORK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network disabled for this test")
_connect = socket.socket.connect
def loopback_only(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        refuse()
    return _connect(self, address)
socket.socket.connect = loopback_only
socket.getaddrinfo = refuse
socket.create_connection = refuse
"""


def test_prices_load_with_no_network(tmp_path):
    """The bundled map loads with every outside connection refused (LiteLLM fetches at
    import); so does the gateway's startup path, lazily."""
    script = NO_NETWORK + """
import time
started = time.perf_counter()
import hitrate
from hitrate.costs import default_prices
price = default_prices().get("anthropic/claude-3-5-sonnet-20241022")
from hitrate.config import parse_config
from hitrate.gateway.app import create_app
create_app(parse_config({"costs": {"refresh": {"source": "https://example.com/p.json"}}}))
print(price.input_cost_per_token, price.max_input_tokens)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3e-06", "200000"]


def test_gateway_starts_and_serves_with_no_network(tmp_path, upstream):
    """`hitrate serve` with a refresh URL it cannot reach: starts, answers, keeps the
    bundled prices."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
models: [{{name: gpt-4o-mini, model: sim-model, api_base: "{upstream.api_base}"}}]
master_key: {MASTER}
costs:
  refresh: {{source: "https://prices.example.com/prices.json", cache_file: "{tmp_path}/p.json"}}
""")
    runner = tmp_path / "run.py"
    runner.write_text(NO_NETWORK + "from hitrate.cli import main\nmain()\n")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(runner), "serve", "--config", str(config),
                                "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.05)
        import openai

        client = openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0)
        ask(client, "offline?", model="gpt-4o-mini")
        assert ask(client, "offline?", model="gpt-4o-mini")[0]["x-hitrate-cache"] == "hit"
        status = httpx.get(f"{url}/costs", headers={"authorization": f"Bearer {MASTER}"}).json()
        assert status["source"] == "bundled"
        assert status["refresh"]["last_error"]  # it tried, failed, and kept going
    finally:
        process.terminate()
        process.wait(timeout=15)


def _costs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hitrate.cli", "costs", "show", *args],
                          capture_output=True, text=True, timeout=60)


def test_costs_show():
    result = _costs_cli("openai/gpt-4o-mini-2024-07-18")
    assert result.returncode == 0, result.stderr
    assert "gpt-4o-mini" in result.stdout
    assert "$0.15 / 1M tokens" in result.stdout and "$0.6 / 1M tokens" in result.stdout
    assert "128,000 tokens" in result.stdout and "bundled" in result.stdout
    unknown = _costs_cli("no-such-model-anywhere")
    assert unknown.returncode == 2 and "no price known" in unknown.stderr


def test_costs_show_reads_config_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("costs: {models: {house: {input_cost_per_token: 2.0e-6, "
                      "output_cost_per_token: 4.0e-6}}}\n")
    result = _costs_cli("house", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "$2 / 1M tokens" in result.stdout and "$4 / 1M tokens" in result.stdout


def test_a_good_map_is_used_even_if_its_local_copy_cannot_be_written(make_gateway, files,
                                                                      tmp_path):
    (tmp_path / "not-a-dir").write_text("a file where a folder should be")
    files.publish("prices.json", litellm_style_map(5e-7))
    gateway = make_gateway(master_key=MASTER, costs={"refresh": refresh_config(
        files.url("prices.json"), tmp_path / "not-a-dir" / "prices.json")})
    wait_for(lambda: price_of(gateway, "gpt-4o-mini")["input_cost_per_token"] == 5e-7)
    time.sleep(0.3)
    assert files.gets == ["/prices.json"]  # fetched once, not again and again
