"""Per-request controls: body `cache` object, Cache-Control header, modes, namespaces."""

from __future__ import annotations

import time

from tests.conftest import ask


def test_ttl_expires_entries(client, upstream):
    ask(client, "short lived", extra_body={"cache": {"ttl": 1}})
    assert ask(client, "short lived")[0]["x-hitrate-cache"] == "hit"
    time.sleep(1.1)
    assert ask(client, "short lived")[0]["x-hitrate-cache"] == "miss"
    assert upstream.calls() == 2


def test_config_ttl_is_the_default(make_gateway, upstream):
    client = make_gateway(cache={"ttl": 1}).client()
    ask(client, "configured ttl")
    time.sleep(1.1)
    assert ask(client, "configured ttl")[0]["x-hitrate-cache"] == "miss"


def test_s_maxage_limits_age_but_does_not_delete(client, upstream):
    ask(client, "aging")
    time.sleep(1.1)
    headers, _ = ask(client, "aging", extra_body={"cache": {"s-maxage": 1}})
    assert headers["x-hitrate-cache"] == "miss"  # too old for this client...
    headers, _ = ask(client, "aging", extra_body={"cache": {"s-maxage": 60}})
    assert headers["x-hitrate-cache"] == "hit"  # ...the fresh one stored meanwhile serves
    assert int(headers["x-hitrate-cache-age"]) <= 1


def test_s_maxage_keeps_older_entry_for_other_clients(client, upstream):
    ask(client, "keep me", extra_body={"cache": {"no-store": False}})
    time.sleep(1.1)
    headers, _ = ask(client, "keep me", extra_body={"cache": {"s-maxage": 1, "no-store": True}})
    assert headers["x-hitrate-cache"] == "miss"
    headers, _ = ask(client, "keep me")
    assert headers["x-hitrate-cache"] == "hit" and int(headers["x-hitrate-cache-age"]) >= 1


def test_no_cache_skips_lookup_and_refreshes(client, upstream):
    _, first = ask(client, "refresh")
    headers, fresh = ask(client, "refresh", extra_body={"cache": {"no-cache": True}})
    assert headers["x-hitrate-cache"] == "bypass"
    assert fresh.choices[0].message.content != first.choices[0].message.content
    headers, after = ask(client, "refresh")
    assert headers["x-hitrate-cache"] == "hit"
    assert after.choices[0].message.content == fresh.choices[0].message.content


def test_no_store_is_not_kept(client, upstream):
    ask(client, "secret", extra_body={"cache": {"no-store": True}})
    assert ask(client, "secret")[0]["x-hitrate-cache"] == "miss"


def test_no_store_still_reads(client, upstream):
    ask(client, "public")
    headers, _ = ask(client, "public", extra_body={"cache": {"no-store": True}})
    assert headers["x-hitrate-cache"] == "hit"


def test_cache_control_header(client, upstream):
    ask(client, "header")
    headers, _ = ask(client, "header", extra_headers={"Cache-Control": "no-cache"})
    assert headers["x-hitrate-cache"] == "bypass"
    ask(client, "header2", extra_headers={"Cache-Control": "no-store"})
    assert ask(client, "header2")[0]["x-hitrate-cache"] == "miss"
    time.sleep(1.1)
    headers, _ = ask(client, "header", extra_headers={"Cache-Control": "max-age=1"})
    assert headers["x-hitrate-cache"] == "miss"
    headers, _ = ask(client, "header", extra_headers={"Cache-Control": "s-maxage=100"})
    assert headers["x-hitrate-cache"] == "hit"


def test_namespaces_are_separate(client, upstream):
    ask(client, "ns", extra_body={"cache": {"namespace": "team-a"}})
    headers, _ = ask(client, "ns", extra_body={"cache": {"namespace": "team-b"}})
    assert headers["x-hitrate-cache"] == "miss"
    assert ":team-b:" in headers["x-hitrate-cache-key"]
    headers, _ = ask(client, "ns", extra_body={"cache": {"namespace": "team-a"}})
    assert headers["x-hitrate-cache"] == "hit"
    assert ask(client, "ns")[0]["x-hitrate-cache"] == "miss"  # default namespace


def test_config_namespace(make_gateway, upstream):
    client = make_gateway(cache={"namespace": "prod"}).client()
    headers, _ = ask(client, "configured namespace")
    assert headers["x-hitrate-cache-key"].startswith("hitrate:v1:prod:chat:")


def test_default_off_mode_needs_use_cache(make_gateway, upstream):
    client = make_gateway(cache={"mode": "default_off"}).client()
    assert ask(client, "opt in")[0]["x-hitrate-cache"] == "bypass"
    assert ask(client, "opt in")[0]["x-hitrate-cache"] == "bypass"
    assert upstream.calls() == 2
    on = {"cache": {"use-cache": True}}
    assert ask(client, "opt in", extra_body=on)[0]["x-hitrate-cache"] == "miss"
    assert ask(client, "opt in", extra_body=on)[0]["x-hitrate-cache"] == "hit"
    assert ask(client, "opt in")[0]["x-hitrate-cache"] == "bypass"


def test_use_cache_false_opts_out(client, upstream):
    ask(client, "opt out")
    headers, _ = ask(client, "opt out", extra_body={"cache": {"use-cache": False}})
    assert headers["x-hitrate-cache"] == "bypass"
    assert "x-hitrate-cache-key" not in headers
    assert upstream.calls() == 2


def test_cache_disabled_in_config(make_gateway, upstream):
    client = make_gateway(cache={"enabled": False}).client()
    ask(client, "off")
    assert ask(client, "off")[0]["x-hitrate-cache"] == "bypass"
    assert upstream.calls() == 2
