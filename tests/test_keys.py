"""Canonical keys: equal requests share a key, different ones never do."""

from __future__ import annotations

import pytest

from hitrate.keys import canonical_request, make_key


def key(body, namespace="default", scope=""):
    return make_key("chat", namespace, canonical_request(body), scope)


BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_key_order_and_float_spelling_do_not_matter():
    a = {"model": "m", "temperature": 1.0, "messages": [{"content": "hi", "role": "user"}]}
    b = {"messages": [{"role": "user", "content": "hi"}], "temperature": 1, "model": "m"}
    assert key(a) == key(b)
    assert key({**BASE, "top_p": 0.70}) == key({**BASE, "top_p": 0.7})


@pytest.mark.parametrize("field", ["stream", "stream_options", "user", "metadata", "cache",
                                   "request_id", "session_id"])
def test_excluded_fields(field):
    assert key({**BASE, field: {"x": 1}}) == key(BASE)


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", 0.2), ("top_p", 0.5), ("n", 2), ("max_tokens", 10),
    ("max_completion_tokens", 10), ("stop", ["\n"]), ("seed", 1),
    ("presence_penalty", 0.5), ("frequency_penalty", 0.5), ("logit_bias", {"1": 5}),
    ("logprobs", True), ("response_format", {"type": "json_object"}),
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "auto"),
    ("functions", [{"name": "f"}]), ("some_future_param", 1),
])
def test_included_fields_change_the_key(field, value):
    assert key({**BASE, field: value}) != key(BASE)


@pytest.mark.parametrize("change", [
    {"model": "other"},
    {"messages": [{"role": "system", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi", "name": "bob"}]},
    {"messages": [{"role": "user", "content": "Hi"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
])
def test_message_and_model_changes_change_the_key(change):
    assert key({**BASE, **change}) != key(BASE)


def test_tool_calls_in_history_are_part_of_the_key():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    other = {**call, "function": {"name": "f", "arguments": '{"a": 1}'}}
    with_call = {**BASE, "messages": [*BASE["messages"],
                                      {"role": "assistant", "content": None, "tool_calls": [call]}]}
    with_other = {**BASE, "messages": [*BASE["messages"],
                                       {"role": "assistant", "content": None, "tool_calls": [other]}]}
    assert key(with_call) != key(with_other)


def test_namespace_and_scope_separate_keys():
    assert key(BASE, "a") != key(BASE, "b")
    assert key(BASE, scope="tenant-1") != key(BASE, scope="tenant-2") != key(BASE)
    assert key(BASE, "a").startswith("hitrate:v1:a:chat:")


def test_single_text_part_equals_string_but_images_do_not():
    parts = {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert key(parts) == key(BASE)
    image = {**BASE, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert key(image) != key(BASE)
