"""Per-key cache settings (`keys[].cache`, `POST /keys`): each setting through the gateway
with real keys and the simulated upstream. A forbidden control is a 403 naming it."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from hitrate.config import ConfigError, parse_config
from tests.conftest import ask
from tests.ops.conftest import KEY_A, KEY_B, MASTER, admin
from tests.serve_process import serve as serving

KEY_S = "sk-settings-0001"


def keyed(settings: dict, *, other: dict | None = None) -> list[dict]:
    """KEY_S with `settings`, KEY_A and KEY_B (tenant a / b) with `other` (default none)."""
    return [{"key": KEY_S, "tenant": "s", "cache": settings},
            {"key": KEY_A, "tenant": "a", **({"cache": other} if other else {})},
            {"key": KEY_B, "tenant": "b"}]


def status(client: openai.OpenAI, text: str, **cache: object) -> str:
    extra = {"extra_body": {"cache": cache}} if cache else {}
    return ask(client, text, **extra)[0]["x-hitrate-cache"]


def forbidden(client: openai.OpenAI, text: str, **kwargs: object) -> dict:
    with pytest.raises(openai.PermissionDeniedError) as exc:
        ask(client, text, **kwargs)
    assert exc.value.status_code == 403
    error = exc.value.body
    assert isinstance(error, dict) and error["type"] == "permission_error"
    assert error["code"] == "cache_control_forbidden"
    return error


def entry_ttl(gateway, key: str) -> float | None:
    entry = admin(gateway, "GET", f"/cache/entries/{key}").json()
    if entry["expires_at"] is None:
        return None
    return round(entry["expires_at"] - entry["created_at"])


def test_mode_off_never_caches_and_refuses_an_opt_in(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"mode": "off"}))
    s = gateway.client(api_key=KEY_S)
    assert [status(s, "q"), status(s, "q")] == ["bypass", "bypass"]
    assert upstream.calls("chat") == 2
    error = forbidden(s, "q", extra_body={"cache": {"use-cache": True}})
    assert error["param"] == "cache.use-cache"
    # Other keys cache as usual.
    a = gateway.client(api_key=KEY_A)
    assert [status(a, "q"), status(a, "q")] == ["miss", "hit"]


def test_mode_default_off_caches_only_on_opt_in(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"mode": "default_off"}))
    s = gateway.client(api_key=KEY_S)
    assert [status(s, "q"), status(s, "q")] == ["bypass", "bypass"]
    opt_in = {"use-cache": True}
    assert [status(s, "q", **opt_in), status(s, "q", **opt_in)] == ["miss", "hit"]


def test_mode_on_overrides_a_default_off_gateway(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"mode": "on"}), cache={"mode": "default_off"})
    s, a = gateway.client(api_key=KEY_S), gateway.client(api_key=KEY_A)
    assert [status(s, "q"), status(s, "q")] == ["miss", "hit"]
    assert [status(a, "q"), status(a, "q")] == ["bypass", "bypass"]
    # `on` is a default: the request may still opt out.
    assert status(s, "q", **{"use-cache": False}) == "bypass"


def test_default_ttl_per_key(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"ttl": 120}), cache={"ttl": 3600})
    headers, _ = ask(gateway.client(api_key=KEY_S), "q")
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 120
    # The request's own ttl still wins (below any max).
    headers, _ = ask(gateway.client(api_key=KEY_S), "r", extra_body={"cache": {"ttl": 30}})
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 30
    headers, _ = ask(gateway.client(api_key=KEY_A), "q")
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 3600


def test_max_ttl_refuses_longer_asks_and_clamps_the_gateway_default(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"max_ttl": 600}, other={"max_ttl": 60}))
    s = gateway.client(api_key=KEY_S)
    error = forbidden(s, "q", extra_body={"cache": {"ttl": 601}})
    assert error["param"] == "cache.ttl" and "600" in error["message"]
    assert upstream.calls("chat") == 0  # refused before any upstream call
    headers, _ = ask(s, "q", extra_body={"cache": {"ttl": 600}})
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 600
    # No ttl asked, none configured (keep forever): the key's cap applies.
    headers, _ = ask(gateway.client(api_key=KEY_A), "q")
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 60
    headers, _ = ask(gateway.client(api_key=KEY_B), "q")
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) is None


def test_gateway_ttl_above_the_key_cap_is_clamped(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"max_ttl": 60}), cache={"ttl": 3600})
    headers, _ = ask(gateway.client(api_key=KEY_S), "q")
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 60


def test_no_cache_forbidden_in_body_header_and_use_cache_false(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"allow_no_cache": False}))
    s = gateway.client(api_key=KEY_S)
    assert forbidden(s, "q", extra_body={"cache": {"no-cache": True}})["param"] == "cache.no-cache"
    assert forbidden(s, "q", extra_headers={"cache-control": "no-cache"})["param"] \
        == "cache.no-cache"
    assert forbidden(s, "q", extra_body={"cache": {"use-cache": False}})["param"] \
        == "cache.use-cache"
    assert upstream.calls("chat") == 0
    assert [status(s, "q"), status(s, "q", **{"no-cache": False})] == ["miss", "hit"]
    # no-store is still allowed; other keys may bypass.
    assert status(s, "other", **{"no-store": True}) == "miss"
    assert status(gateway.client(api_key=KEY_A), "q", **{"no-cache": True}) == "bypass"


def test_no_store_forbidden(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=keyed({"allow_no_store": False}))
    s = gateway.client(api_key=KEY_S)
    assert forbidden(s, "q", extra_body={"cache": {"no-store": True}})["param"] == "cache.no-store"
    assert forbidden(s, "q", extra_headers={"cache-control": "no-store"})["param"] \
        == "cache.no-store"
    assert status(s, "q", **{"no-cache": True}) == "bypass"
    assert status(s, "q") == "hit"  # the no-cache answer was stored


def test_shared_namespace_read_and_write_rights(tenant_gateway, upstream):
    keys = [{"key": KEY_A, "tenant": "a"},
            {"key": "sk-reader-0001", "tenant": "r",
             "cache": {"shared_read": ["faq"], "shared_write": []}},
            {"key": "sk-writer-0001", "tenant": "w",
             "cache": {"shared_read": [], "shared_write": ["faq"]}},
            {"key": "sk-nobody-0001", "tenant": "n",
             "cache": {"shared_read": [], "shared_write": []}}]
    gateway = tenant_gateway(keys=keys, shared_namespaces=["faq", "docs"])
    faq = {"namespace": "faq"}
    reader = gateway.client(api_key="sk-reader-0001")
    writer = gateway.client(api_key="sk-writer-0001")
    a = gateway.client(api_key=KEY_A)

    # The reader's misses are not stored in the shared namespace...
    assert [status(reader, "hours?", **faq), status(reader, "hours?", **faq)] == ["miss", "miss"]
    assert status(a, "hours?", **faq) == "miss"
    # ...but it reads what others stored.
    assert status(reader, "hours?", **faq) == "hit"
    # The writer never reads (bypass) but its answers serve everyone else.
    assert status(writer, "prices?", **faq) == "bypass"
    assert status(writer, "prices?", **faq) == "bypass"
    assert status(a, "prices?", **faq) == "hit"
    # No rights at all: refused.
    nobody = gateway.client(api_key="sk-nobody-0001")
    assert forbidden(nobody, "hours?", extra_body={"cache": faq})["param"] == "cache.namespace"
    # Lists name namespaces: "docs" is in neither list, so the reader may not use it either;
    # and the restriction is only about shared namespaces, its own ones stay free.
    assert forbidden(reader, "x", extra_body={"cache": {"namespace": "docs"}})["param"] \
        == "cache.namespace"
    assert [status(nobody, "own", namespace="mine"), status(nobody, "own", namespace="mine")] \
        == ["miss", "hit"]


def test_settings_through_the_admin_api(tenant_gateway, upstream, tmp_path):
    keys_file = tmp_path / "keys.json"
    gateway = tenant_gateway(keys=keyed({"mode": "default_off", "max_ttl": 300}),
                             keys_file=str(keys_file), shared_namespaces=["faq"])
    listed = {k["tenant"]: k for k in admin(gateway, "GET", "/keys").json()["keys"]}
    assert listed["s"]["cache"] == {"mode": "default_off", "ttl": None, "max_ttl": 300,
                                    "allow_no_cache": True, "allow_no_store": True,
                                    "shared_read": None, "shared_write": None}
    assert listed["b"]["cache"] is None

    settings = {"mode": "on", "ttl": 60, "max_ttl": 120, "allow_no_cache": False,
                "shared_read": ["faq"], "shared_write": []}
    created = admin(gateway, "POST", "/keys", json={"tenant": "t", "cache": settings})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["cache"] == {**settings, "allow_no_store": True}
    new = gateway.client(api_key=body["key"])
    headers, _ = ask(new, "q")
    assert headers["x-hitrate-cache"] == "miss"
    assert entry_ttl(gateway, headers["x-hitrate-cache-key"]) == 60
    forbidden(new, "q", extra_body={"cache": {"no-cache": True}})

    # Persisted with the key's digest; enforced again after a restart.
    restarted = tenant_gateway(keys=keyed({}), keys_file=str(keys_file),
                               shared_namespaces=["faq"])
    again = {k["id"]: k for k in admin(restarted, "GET", "/keys").json()["keys"]}
    assert again[body["id"]]["cache"] == body["cache"]
    forbidden(restarted.client(api_key=body["key"]), "q", extra_body={"cache": {"ttl": 121}})

    # Changed later with PATCH (admin keys; config keys are changed in the file).
    patched = admin(gateway, "PATCH", f"/keys/{body['id']}", json={"cache": {"mode": "off"}})
    assert patched.status_code == 200 and patched.json()["cache"]["mode"] == "off"
    assert status(new, "q") == "bypass"
    assert json.loads(keys_file.read_text())["keys"][0]["cache"]["mode"] == "off"
    cleared = admin(gateway, "PATCH", f"/keys/{body['id']}", json={"cache": None})
    assert cleared.json()["cache"] is None and status(new, "q") == "hit"
    config_key = admin(gateway, "PATCH", f"/keys/{listed['s']['id']}", json={"cache": {}})
    assert config_key.status_code == 409
    assert admin(gateway, "PATCH", "/keys/key_nope", json={"cache": None}).status_code == 404
    assert admin(gateway, "PATCH", f"/keys/{body['id']}", json={"tenant": "x"}).status_code == 400
    assert admin(gateway, "PATCH", f"/keys/{body['id']}", key=KEY_A,
                 json={"cache": None}).status_code == 403

    for bad, param in (({"mode": "sometimes"}, "cache.mode"),
                       ({"ttl": 600, "max_ttl": 60}, "cache"),
                       ({"ttl": -1}, "cache.ttl"),
                       ({"shared_read": ["not-shared"]}, "cache.shared_read"),
                       ({"colour": "blue"}, "cache.colour"),
                       ("on", "cache")):
        response = admin(gateway, "POST", "/keys", json={"tenant": "t", "cache": bad})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["param"] == param


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"keys\[0\]\.cache: .*max_ttl"):
        parse_config({"keys": [{"key": KEY_A, "tenant": "a",
                                "cache": {"ttl": 600, "max_ttl": 60}}]})
    with pytest.raises(ConfigError, match=r"keys\[0\]\.cache\.shared_write: 'faq'"):
        parse_config({"keys": [{"key": KEY_A, "tenant": "a", "cache": {"shared_write": ["faq"]}}]})
    with pytest.raises(ConfigError, match=r"keys\[0\]\.cache\.mode"):
        parse_config({"keys": [{"key": KEY_A, "tenant": "a", "cache": {"mode": "maybe"}}]})
    with pytest.raises(ConfigError, match=r"keys\[0\]\.cache\.allow_no_store"):
        parse_config({"keys": [{"key": KEY_A, "tenant": "a",
                                "cache": {"allow_no_store": "nope"}}]})


def test_settings_from_a_yaml_file_through_hitrate_serve(tmp_path, upstream):
    """`mode: off` is a YAML boolean; the loader reads it as the mode it means."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
models:
  - name: gpt-test
    model: sim-model
    api_base: {upstream.api_base}
master_key: {MASTER}
keys:
  - {{key: {KEY_A}, tenant: a, cache: {{mode: off}}}}
  - {{key: {KEY_B}, tenant: b, cache: {{max_ttl: 30, allow_no_cache: false}}}}
""")
    with serving(config) as base:
        a = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY_A, max_retries=0)
        b = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY_B, max_retries=0)
        assert [status(a, "q"), status(a, "q")] == ["bypass", "bypass"]
        headers, _ = ask(b, "q")
        key = headers["x-hitrate-cache-key"]
        entry = httpx.get(f"{base}/cache/entries/{key}",
                          headers={"authorization": f"Bearer {MASTER}"}).json()
        assert round(entry["expires_at"] - entry["created_at"]) == 30
        forbidden(b, "q", extra_body={"cache": {"ttl": 31}})
        forbidden(b, "q", extra_body={"cache": {"no-cache": True}})
        listed = httpx.get(f"{base}/keys", headers={"authorization": f"Bearer {MASTER}"}).json()
        assert {k["tenant"]: k["cache"]["mode"] for k in listed["keys"]} == {"a": "off", "b": None}


def test_the_engine_applies_settings_for_library_callers():
    """In-process code gets the same rule from the engine (`ResponseCache.allowed`)."""
    from hitrate.controls import Controls
    from hitrate.engine import ResponseCache
    from hitrate.key_settings import ControlForbidden, KeySettings

    cache = ResponseCache(ttl=3600, shared_namespaces=["faq"])
    settings = KeySettings(ttl=60, max_ttl=600, shared_write=frozenset())
    assert cache.allowed(Controls(), settings).ttl == 60
    assert cache.allowed(Controls(ttl=300), settings).ttl == 300
    with pytest.raises(ControlForbidden) as exc:
        cache.allowed(Controls(ttl=601), settings)
    assert exc.value.control == "ttl"
    faq = cache.allowed(Controls(namespace="faq"), settings)
    assert faq.no_store and not faq.no_cache  # read-only there
    assert cache.allowed(Controls(), KeySettings(max_ttl=60)).ttl == 60  # gateway's 3600 clamped
