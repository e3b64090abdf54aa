"""Real servers on 127.0.0.1: the simulated OpenAI upstream and the gateway itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from hitrate.config import parse_config
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from hitrate.simulator import SimulatorState, create_simulator


class Upstream:
    def __init__(self, server: BackgroundServer, state: SimulatorState):
        self.server = server
        self.state = state

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_base(self) -> str:
        return f"{self.server.url}/v1"

    def calls(self, kind: str | None = None) -> int:
        return self.state.calls[kind] if kind else sum(self.state.calls.values())


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[Upstream]:
    state = SimulatorState()
    with BackgroundServer(create_simulator(state)) as server:
        yield Upstream(server, state)


@pytest.fixture
def upstream(_upstream_server: Upstream) -> Upstream:
    _upstream_server.state.reset()
    _upstream_server.state.latency = (0.0, 0.0)
    return _upstream_server


class Gateway:
    def __init__(self, server: BackgroundServer, app: Any):
        self.server = server
        self.app = app

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def cache(self):
        return self.app.state.gateway.cache

    def client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("api_key", "sk-test")
        return openai.OpenAI(base_url=f"{self.url}/v1", max_retries=0, **kwargs)

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("api_key", "sk-test")
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", max_retries=0, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)


# Functional semantic tests (not about the embedding deadline) give the embedder none:
# on a busy shared machine one e5 forward pass can exceed the default 1 s, and a lookup
# past its deadline is a miss by design, which those tests did not expect. The deadline
# itself is tested in tests/semantic/test_semantic_bounds.py.
NO_DEADLINE: dict[str, Any] = {"embed_timeout_ms": None}


@pytest.fixture
def make_gateway(upstream: Upstream) -> Iterator[Callable[..., Gateway]]:
    started: list[BackgroundServer] = []

    def make(cache: dict[str, Any] | None = None, models: list[dict[str, Any]] | None = None,
             **top: Any) -> Gateway:
        config = parse_config({
            "models": models or [{"name": "gpt-test", "model": "sim-model",
                                  "api_base": upstream.api_base, "api_key": "sk-upstream"}],
            "cache": cache or {},
            **top,
        })
        app = create_app(config)
        server = BackgroundServer(app).start()
        started.append(server)
        return Gateway(server, app)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.client()


def ask(client: openai.OpenAI, text: str, **kwargs: Any):
    """A chat call returning (headers, parsed completion)."""
    kwargs.setdefault("model", "gpt-test")
    raw = client.chat.completions.with_raw_response.create(
        messages=[{"role": "user", "content": text}], **kwargs)
    return raw.headers, raw.parse()


def stream_text(client: openai.OpenAI, text: str, **kwargs: Any) -> tuple[Any, str, list]:
    """A streamed chat call returning (headers, joined content, chunks)."""
    kwargs.setdefault("model", "gpt-test")
    with client.chat.completions.with_streaming_response.create(
            messages=[{"role": "user", "content": text}], stream=True, **kwargs) as response:
        chunks = list(response.parse())
        headers = response.headers
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return headers, content, chunks
