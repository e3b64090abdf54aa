from __future__ import annotations

import pytest

from hitrate.controls import ControlError, Controls, parse_controls


def test_body_controls():
    c = parse_controls({"ttl": 60, "s-maxage": 10, "no-cache": True, "no-store": False,
                        "namespace": "a.b-c", "use-cache": True}, None)
    assert c == Controls(ttl=60, max_age=10, no_cache=True, no_store=False, namespace="a.b-c",
                         use_cache=True)


def test_header_controls_and_merge():
    c = parse_controls(None, "no-cache, no-store, max-age=30, s-maxage=20, private")
    assert (c.no_cache, c.no_store, c.max_age) == (True, True, 20)
    merged = parse_controls({"s-maxage": 5, "no-store": False}, "max-age=30, no-store")
    assert merged.max_age == 5 and merged.no_store is False


def test_modes():
    assert Controls().enabled("default_on") and not Controls().enabled("default_off")
    assert Controls(use_cache=True).enabled("default_off")
    assert not Controls(use_cache=False).enabled("default_on")


@pytest.mark.parametrize("cache", [{"ttl": 0}, {"ttl": True}, {"s-maxage": -1},
                                   {"use-cache": 1}, {"namespace": ""}, {"namespace": 5},
                                   {"nocache": True}, ["ttl"]])
def test_bad_body_controls(cache):
    with pytest.raises(ControlError):
        parse_controls(cache, None)


def test_bad_header():
    with pytest.raises(ControlError):
        parse_controls(None, "max-age=-4")
