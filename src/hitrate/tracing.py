"""OpenTelemetry traces: optional (`pip install 'hitrate[otel]'`), off unless configured.

Spans (one trace per API request, continuing the client's W3C `traceparent`):

    POST /v1/chat/completions           SERVER; hitrate.cache.status / .kind, model,
    ├── hitrate.cache.exact_lookup        namespace, tenant, endpoint, HTTP status
    ├── hitrate.semantic.embed          (semantic cache, after an exact miss)
    ├── hitrate.semantic.search         vector search + verification of the candidates
    ├── hitrate.upstream                CLIENT; the upstream gets `traceparent` of this span
    └── hitrate.cache.store

Never recorded: API keys (only the tenant name) and prompt text, unless
`tracing.capture_prompts: true` adds the request body (truncated) to the request span.

Off (the default) costs nothing measurable: every helper is a module-level function that
reads one global and returns a shared no-op (`span()` returns the same reusable
`nullcontext`, `start_request()` returns None); OpenTelemetry is not even imported.
Tracing is process-wide (OpenTelemetry's context is), configured by `configure()` when
a gateway starts, from the config's `tracing:` section or the standard `OTEL_*`
environment variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from hitrate.config import TracingConfig

log = logging.getLogger("hitrate.tracing")

_NOOP: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_otel: Any = None  # the OpenTelemetry API pieces used per request (imported once, when on)
_provider: Any = None  # the TracerProvider in use
_owned = False  # we built `_provider` (so we shut it down)
_capture_prompts = False
PROMPT_LIMIT = 4096  # characters of request body kept when capture_prompts is on


def active() -> bool:
    return _tracer is not None


def span(name: str, *, client: bool = False, end: bool = True) -> Any:
    """A child span of the current one, as a context manager yielding it (None when off).
    `end=False` leaves it open: pass it to `finish()` later (streams)."""
    if _tracer is None:
        return _NOOP
    kinds = _otel.SpanKind
    return _tracer.start_as_current_span(
        name, kind=kinds.CLIENT if client else kinds.INTERNAL, end_on_exit=end)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """On the current span (callers guard with `active()` so building the dict is free
    when off)."""
    _otel.trace.get_current_span().set_attributes(
        {k: v for k, v in attributes.items() if v is not None})


def finish(span_: Any, error: str | None = None) -> None:
    """End a span opened with `span(..., end=False)` (a no-op for None)."""
    if span_ is None:
        return
    if error is not None:
        span_.set_status(_otel.Status(_otel.StatusCode.ERROR, error))
    span_.end()


# -- the request span ------------------------------------------------------------------


class RequestSpan:
    # A plain class: a dataclass would cost milliseconds at import, for every user.
    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any):
        self.span = span
        self.token = token  # from opentelemetry.context.attach

    def detach(self) -> None:
        """Leave the span's context (the handler is done); the span stays open until
        `end()` (a stream may still be running)."""
        if self.token is not None:
            _otel.context.detach(self.token)
            self.token = None

    def close_with(self, response: Any) -> None:
        """End with `response` (a `ProxyResponse`): now, or for a stream when it is done,
        keeping the span current while it streams (the store happens then)."""
        if response.stream is None:
            self.detach()
            self.end(response.status, response.headers)
            return
        previous = response.on_close

        async def on_close() -> None:
            try:
                if previous is not None:
                    await previous()
            finally:
                self.detach()
                self.end(response.status, response.headers)

        response.on_close = on_close

    def abort(self, reason: str) -> None:
        """The handler itself was interrupted (the client went away: cancelled)."""
        self.detach()
        self.span.set_status(_otel.Status(_otel.StatusCode.ERROR, reason))
        self.span.end()

    def end(self, status: int, headers: Mapping[str, str]) -> None:
        span_ = self.span
        span_.set_attribute("http.response.status_code", status)
        cache_status = headers.get("x-hitrate-cache")
        if cache_status is not None:
            span_.set_attribute("hitrate.cache.status", cache_status)
        hit_kind = headers.get("x-hitrate-cache-kind")
        if hit_kind is not None:
            span_.set_attribute("hitrate.cache.kind", hit_kind)
        if status >= 500:
            span_.set_status(_otel.Status(_otel.StatusCode.ERROR, f"HTTP {status}"))
        span_.end()


def start_request(method: str, path: str, headers: Mapping[str, str],
                  tenant: str | None = None) -> RequestSpan | None:
    """The SERVER span of one API request, continuing the client's `traceparent`, made
    current until `detach()`; None when tracing is off."""
    if _tracer is None:
        return None
    otel = _otel
    parent = otel.propagate.extract(headers)
    span_ = _tracer.start_span(f"{method} {path}", context=parent, kind=otel.SpanKind.SERVER,
                               attributes={"http.request.method": method, "url.path": path})
    if tenant is not None:
        span_.set_attribute("hitrate.tenant", tenant)
    token = otel.context.attach(otel.trace.set_span_in_context(span_, parent))
    return RequestSpan(span_, token)


def describe_request(kind: str, body: Mapping[str, Any], namespace: str | None = None,
                     key: str | None = None) -> None:
    """Attributes of the request span known once the proxy parsed the body."""
    attributes: dict[str, Any] = {"hitrate.endpoint": kind, "gen_ai.request.model":
                                  body.get("model"), "hitrate.namespace": namespace,
                                  "hitrate.cache.key": key}
    if _capture_prompts:
        import orjson

        attributes["hitrate.request.body"] = orjson.dumps(body).decode()[:PROMPT_LIMIT]
    set_attributes(attributes)


async def _inject(request: httpx.Request) -> None:
    if _otel is not None:
        _otel.propagate.inject(request.headers)


def instrument(http: httpx.AsyncClient) -> None:
    """Upstream calls carry `traceparent` (the current span: `hitrate.upstream`)."""
    if _tracer is not None:
        http.event_hooks["request"].append(_inject)


# -- setup -----------------------------------------------------------------------------


def wanted(settings: TracingConfig | None, env: Mapping[str, str] = os.environ) -> bool:
    """On if the config says so; with no `enabled` in the config, on if the standard
    environment asks for a trace exporter. `OTEL_SDK_DISABLED=true` wins over both."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if settings is not None and settings.enabled is not None:
        return settings.enabled
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def use_provider(provider: Any, capture_prompts: bool = False) -> None:
    """Trace with `provider` (a host application's, or a test's), from now on."""
    global _tracer, _provider, _owned, _capture_prompts, _otel
    from types import SimpleNamespace

    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from hitrate import __version__

    _otel = SimpleNamespace(context=context, propagate=propagate, trace=trace,
                            SpanKind=SpanKind, Status=Status, StatusCode=StatusCode)
    _provider, _owned, _capture_prompts = provider, False, capture_prompts
    _tracer = provider.get_tracer("hitrate", __version__)


def configure(settings: TracingConfig | None) -> bool:
    """Turn tracing on if `settings`/the environment ask for it (see `wanted`). Uses a
    provider installed with `use_provider`, else the global SDK one (a host app's, or
    `opentelemetry-instrument`'s), else builds one with the configured exporter.
    Returns whether tracing is on. Never raises: a broken setup logs and stays off."""
    global _capture_prompts
    if not wanted(settings):
        return _tracer is not None
    capture = bool(settings and settings.capture_prompts)
    if _tracer is not None:
        _capture_prompts = capture
        return True
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("tracing is configured but OpenTelemetry is not installed: "
                    "pip install 'hitrate[otel]'")
        return False
    try:
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            use_provider(existing, capture)
            return True
        use_provider(_build_provider(settings), capture)
    except Exception as exc:  # a bad exporter setting must not stop the gateway
        log.warning("cannot set up tracing (%s: %s); tracing stays off", type(exc).__name__, exc)
        return False
    global _owned
    _owned = True
    return True


def _build_provider(settings: TracingConfig | None) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    service = (settings.service_name if settings else None) or os.environ.get(
        "OTEL_SERVICE_NAME") or "hitrate"
    ratio = settings.sample_ratio if settings else 1.0
    provider = TracerProvider(resource=Resource.create({"service.name": service}),
                              sampler=ParentBased(TraceIdRatioBased(ratio)))
    exporter_name = (settings.exporter if settings and settings.exporter else
                     os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip())
    if exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter_name == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings)))
    elif exporter_name != "none":
        raise ValueError(f"unknown trace exporter {exporter_name!r} (otlp, console, none)")
    return provider


def _otlp_exporter(settings: TracingConfig | None) -> Any:
    """OTLP over HTTP (protobuf) unless the protocol is grpc; endpoint, headers, TLS and
    timeout from the standard OTEL_EXPORTER_OTLP_* variables unless set in the config."""
    protocol = (settings.protocol if settings and settings.protocol else
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    endpoint = settings.endpoint if settings else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPExporter,
    )

    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"  # the config takes the base URL
    return HTTPExporter(endpoint=endpoint)


def shutdown() -> None:
    """When a gateway stops: flush and stop the provider `configure` built, and turn
    tracing off. A provider from `use_provider` or the host app is left alone."""
    if _owned:
        reset()


def reset() -> None:
    """Tracing off (a provider we built is flushed and shut down first)."""
    global _tracer, _provider, _owned
    provider, owned = _provider, _owned
    _tracer = _provider = None
    _owned = False
    if owned and provider is not None:
        with contextlib.suppress(Exception):
            provider.shutdown()
