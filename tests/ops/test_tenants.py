"""Virtual keys bound to tenants: isolated cache entries by default, sharing only by
explicit opt-in (per key or per namespace), 401 without a valid key, keys never logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import openai
import pytest

from hitrate.config import ConfigError, parse_config
from tests.conftest import ask, stream_text
from tests.ops.conftest import KEY_A, KEY_B, MASTER, admin


def test_tenants_never_get_each_others_answers(tenant_gateway, upstream):
    gateway = tenant_gateway()
    a, b = gateway.client(api_key=KEY_A), gateway.client(api_key=KEY_B)
    headers_a, answer_a = ask(a, "our secret roadmap")
    assert headers_a["x-hitrate-cache"] == "miss"
    # B probes with the identical request: a miss, a fresh upstream answer, another key.
    headers_b, answer_b = ask(b, "our secret roadmap")
    assert headers_b["x-hitrate-cache"] == "miss"
    assert answer_b.choices[0].message.content != answer_a.choices[0].message.content
    assert headers_b["x-hitrate-cache-key"] != headers_a["x-hitrate-cache-key"]
    assert upstream.calls("chat") == 2
    # Each tenant hits its own entry.
    assert ask(a, "our secret roadmap")[1].choices[0].message.content \
        == answer_a.choices[0].message.content
    assert ask(b, "our secret roadmap")[1].choices[0].message.content \
        == answer_b.choices[0].message.content
    assert upstream.calls("chat") == 2


def test_isolation_holds_for_streams_and_embeddings(tenant_gateway, upstream):
    gateway = tenant_gateway()
    a, b = gateway.client(api_key=KEY_A), gateway.client(api_key=KEY_B)
    stream_text(a, "streamed question")
    assert stream_text(a, "streamed question")[0]["x-hitrate-cache"] == "hit"
    assert stream_text(b, "streamed question")[0]["x-hitrate-cache"] == "miss"
    a.embeddings.create(model="gpt-test", input=["private text"])
    raw = b.embeddings.with_raw_response.create(model="gpt-test", input=["private text"])
    assert raw.headers["x-hitrate-cache"] == "miss"
    assert raw.headers["x-hitrate-cache-items-hit"] == "0/1"


async def test_no_cross_tenant_coalescing(tenant_gateway, upstream):
    """An identical request in flight for A must not answer B (nor reveal it by timing)."""
    gateway = tenant_gateway()
    upstream.state.latency = (0.3, 0.3)
    a, b = gateway.async_client(api_key=KEY_A), gateway.async_client(api_key=KEY_B)
    messages = [{"role": "user", "content": "concurrent question"}]
    first, second = await asyncio.gather(
        a.chat.completions.create(model="gpt-test", messages=messages),
        b.chat.completions.create(model="gpt-test", messages=messages))
    assert first.choices[0].message.content != second.choices[0].message.content
    assert upstream.calls("chat") == 2
    await a.close()
    await b.close()


def test_shared_keys_opt_in_to_one_cache(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=[
        {"key": KEY_A, "tenant": "a"},
        {"key": "sk-shared-c-0001", "tenant": "c", "shared": True},
        {"key": "sk-shared-d-0001", "tenant": "d", "shared": True}])
    c = gateway.client(api_key="sk-shared-c-0001")
    d = gateway.client(api_key="sk-shared-d-0001")
    _, answer = ask(c, "public question")
    headers, again = ask(d, "public question")
    assert headers["x-hitrate-cache"] == "hit"
    assert again.choices[0].message.content == answer.choices[0].message.content
    # A did not opt in: it sees none of the shared entries.
    assert ask(gateway.client(api_key=KEY_A), "public question")[0]["x-hitrate-cache"] == "miss"


def test_shared_namespaces_opt_in(tenant_gateway, upstream):
    gateway = tenant_gateway(shared_namespaces=["faq"])
    a, b = gateway.client(api_key=KEY_A), gateway.client(api_key=KEY_B)
    faq = {"cache": {"namespace": "faq"}}
    _, answer = ask(a, "opening hours?", extra_body=faq)
    headers, again = ask(b, "opening hours?", extra_body=faq)
    assert headers["x-hitrate-cache"] == "hit"
    assert again.choices[0].message.content == answer.choices[0].message.content
    # Outside the shared namespace, still isolated.
    ask(a, "opening hours?")
    assert ask(b, "opening hours?")[0]["x-hitrate-cache"] == "miss"


def test_keys_created_through_the_admin_api(tenant_gateway, upstream, tmp_path):
    keys_file = tmp_path / "keys.json"
    gateway = tenant_gateway(keys_file=str(keys_file))
    created = admin(gateway, "POST", "/keys", json={"tenant": "a", "name": "ci"})
    assert created.status_code == 201
    body = created.json()
    new_key = body["key"]
    assert body["tenant"] == "a" and body["id"].startswith("key_")
    # Same tenant as KEY_A: shares A's entries, and nobody else's.
    ask(gateway.client(api_key=KEY_A), "tenant a asks")
    assert ask(gateway.client(api_key=new_key), "tenant a asks")[0]["x-hitrate-cache"] == "hit"
    listed = admin(gateway, "GET", "/keys").json()["keys"]
    assert body["id"] in {k["id"] for k in listed}
    assert new_key not in str(listed) and KEY_A not in str(listed)
    assert new_key not in keys_file.read_text()  # only digests are persisted

    # Survives a restart (keys_file), then deletion revokes it.
    restarted = tenant_gateway(keys_file=str(keys_file))
    assert ask(restarted.client(api_key=new_key), "hello")[0]["x-hitrate-cache"] == "miss"
    assert admin(restarted, "DELETE", f"/keys/{body['id']}").json() == {"deleted": True}
    with pytest.raises(openai.AuthenticationError):
        ask(restarted.client(api_key=new_key), "hello")
    assert admin(restarted, "DELETE", f"/keys/{body['id']}").status_code == 404
    bad = admin(restarted, "POST", "/keys", json={"tenant": "no spaces allowed"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tenant"


@pytest.mark.parametrize("key", [None, "Bearer", "sk-wrong-key-000", KEY_A + "x", KEY_A[:-1]])
def test_requests_without_a_valid_key_get_401(tenant_gateway, key):
    gateway = tenant_gateway()
    headers = {} if key is None else {"authorization": key if key == "Bearer" else f"Bearer {key}"}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json={
        "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 401


def test_keys_are_never_logged(tenant_gateway, caplog):
    with caplog.at_level(logging.DEBUG):
        gateway = tenant_gateway()
        for key in ("sk-wrong-guess-123", KEY_A, MASTER):
            expect = pytest.raises(openai.AuthenticationError) if key.startswith("sk-wrong") \
                else contextlib.nullcontext()
            with expect:
                ask(gateway.client(api_key=key), "hi")
        created = admin(gateway, "POST", "/keys", json={"tenant": "z"}).json()["key"]
        ask(gateway.client(api_key=created), "hi")
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("sk-wrong-guess-123", KEY_A, KEY_B, MASTER, created):
        assert secret not in text


def test_master_key_alone_still_works_litellm_style(upstream, make_gateway):
    config = parse_config({
        "model_list": [{"model_name": "gpt-test",
                        "litellm_params": {"model": "openai/sim-model",
                                           "api_base": upstream.api_base}}],
        "litellm_settings": {"cache": True},
        "general_settings": {"master_key": MASTER}})
    assert config.master_key == MASTER and not config.keys
    gateway = make_gateway(master_key=MASTER)
    client = gateway.client(api_key=MASTER)
    ask(client, "hello")
    assert ask(client, "hello")[0]["x-hitrate-cache"] == "hit"
    with pytest.raises(openai.AuthenticationError):
        ask(gateway.client(api_key="sk-nope-nope"), "hello")


def test_bad_key_config_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"keys\[1\]\.key") as exc:
        parse_config({"master_key": MASTER, "keys": [{"key": KEY_A, "tenant": "a"},
                                                     {"key": KEY_A, "tenant": "b"}]})
    assert KEY_A not in str(exc.value)
    with pytest.raises(ConfigError, match="tenant"):
        parse_config({"keys": [{"key": KEY_A, "tenant": "bad tenant"}]})
    with pytest.raises(ConfigError, match="keys_file"):
        parse_config({"keys_file": "/tmp/keys.json"})
