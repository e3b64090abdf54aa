"""Bad input and upstream trouble become OpenAI-shaped errors with the right status."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest

from tests.conftest import ask


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "gpt-test"}, "messages"),
    ({"model": "gpt-test", "messages": []}, "messages"),
    ({"model": "gpt-test", "messages": "hi"}, "messages"),
    ({"model": "gpt-test", "messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({**GOOD, "temperature": "0.5"}, "temperature"),
    ({**GOOD, "temperature": 7}, "temperature"),
    ({**GOOD, "max_tokens": 1.5}, "max_tokens"),
    ({**GOOD, "stream": "yes"}, "stream"),
    ({**GOOD, "n": 0}, "n"),
    ({**GOOD, "messages": [{"role": "user", "content": 42}]}, "messages.0.content"),
])
def test_wrong_shapes_are_400(gateway, upstream, body, param):
    response = gateway.post(CHAT, json=body)
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]
    assert upstream.calls() == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"null", b"\xff\xfe", b'"str"'])
def test_malformed_bodies_are_400(gateway, raw):
    response = gateway.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/embeddings"])
def test_other_routes_validate_too(gateway, path):
    response = gateway.post(path, json={"model": "gpt-test"})
    assert response.status_code == 400
    assert _error(response)["code"] == "missing_required_parameter"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        ask(client, "hi", model="no-such-model")
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(("cache", "fragment"), [
    ({"ttl": "long"}, "cache.ttl"),
    ({"ttl": -1}, "cache.ttl"),
    ({"no-cache": "yes"}, "cache.no-cache"),
    ({"namespace": "bad space"}, "cache.namespace"),
    ({"colour": "red"}, "colour"),
    ("everything", "cache"),
])
def test_bad_cache_controls_are_400(gateway, upstream, cache, fragment):
    response = gateway.post(CHAT, json={**GOOD, "cache": cache})
    assert response.status_code == 400
    assert fragment in _error(response)["message"]
    assert upstream.calls() == 0


def test_bad_cache_control_header_is_400(gateway):
    response = gateway.post(CHAT, json=GOOD, headers={"cache-control": "max-age=soon"})
    assert response.status_code == 400


def test_upstream_error_status_and_body_pass_through(client):
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "slow down [[error:429]]")
    assert info.value.status_code == 429
    assert info.value.body["message"] == "simulated upstream error 429"


def test_upstream_error_passes_through_on_streams(client):
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", stream=True,
                                       messages=[{"role": "user", "content": "x [[error:503]]"}])


def test_upstream_timeout_is_504(make_gateway, upstream):
    gw = make_gateway(models=[{"name": "gpt-test", "api_base": upstream.api_base,
                               "timeout": 0.3}])
    response = gw.post(CHAT, json={**GOOD, "messages": [
        {"role": "user", "content": "wait [[slow:2]]"}]})
    assert response.status_code == 504
    assert _error(response)["code"] == "upstream_timeout"
    # The simulator sends stream headers at once and stalls after: the timeout can
    # only be reported in-band, as an error event the SDK raises on.
    with pytest.raises(openai.APIError, match="ReadTimeout"):
        for _ in gw.client().chat.completions.create(
                model="gpt-test", stream=True,
                messages=[{"role": "user", "content": "wait more [[slow:2]]"}]):
            pass


def test_unreachable_upstream_is_502(make_gateway):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gw = make_gateway(models=[{"name": "gpt-test", "api_base": f"http://127.0.0.1:{port}/v1"}])
    response = gw.post(CHAT, json=GOOD)
    assert response.status_code == 502
    assert _error(response)["code"] == "upstream_unreachable"


def test_unknown_route_and_method_are_openai_shaped(gateway):
    assert httpx.get(f"{gateway.url}/v1/nothing").status_code == 404
    response = httpx.get(f"{gateway.url}{CHAT}")
    assert response.status_code == 405
    _error(response)


def test_master_key_is_required_when_configured(make_gateway, upstream):
    gw = make_gateway(master_key="sk-master")
    with pytest.raises(openai.AuthenticationError):
        ask(gw.client(api_key="sk-wrong"), "hi")
    assert gw.post(CHAT, json=GOOD).status_code == 401
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401
    headers, _ = ask(gw.client(api_key="sk-master"), "hi")
    assert headers["x-hitrate-cache"] == "miss"
    # the client's key is not forwarded; the upstream gets its own
    assert upstream.calls() == 1


def test_upstream_cookies_are_not_shared_between_clients(make_gateway, upstream):
    """The upstream pool is shared: a Set-Cookie for one request must not reach others."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from hitrate.serving import BackgroundServer

    seen: list[str | None] = []

    async def chat(request):
        seen.append(request.headers.get("cookie"))
        response = JSONResponse({"id": "x", "object": "chat.completion", "created": 0,
                                 "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "ok"}}]})
        response.set_cookie("session", "secret-of-first-client")
        return response

    with BackgroundServer(Starlette(routes=[Route("/v1/chat/completions", chat,
                                                  methods=["POST"])])) as cookie_upstream:
        gw = make_gateway(models=[{"name": "gpt-test", "api_base": cookie_upstream.url + "/v1"}],
                          cache={"enabled": False})
        for text in ("first", "second"):
            assert gw.post(CHAT, json={**GOOD, "messages": [
                {"role": "user", "content": text}]}).status_code == 200
    assert seen == [None, None]
