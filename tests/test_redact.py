"""Secrets in URLs are masked wherever a URL is printed or logged (hitrate/redact.py)."""

from __future__ import annotations

import pytest

from hitrate.redact import redact_text, redact_url, redact_urls


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:s3cret@cache.example.com:6380/1",
     "rediss://default:***@cache.example.com:6380/1"),
    ("redis://host:6379/0?password=s3cret&db=2", "redis://host:6379/0?password=***&db=2"),
    ("https://example.com/prices.json?token=abc&v=1",
     "https://example.com/prices.json?token=***&v=1"),
    ("https://acct.blob.core.windows.net/c?sv=2024&sig=abc%2Fdef",
     "https://acct.blob.core.windows.net/c?sv=2024&sig=***"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    ("redis://user@host:6379", "redis://user@host:6379"),
    ("unix:///tmp/redis.sock?password=x", "unix:///tmp/redis.sock?password=***"),
    ("redis://:p@ss:w0rd@host:99999999/0", "redis://:***@host:99999999/0"),  # bad port
    ("not a url", "not a url"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_urls_in_a_settings_dump():
    dump = {"remote_url": "redis://:pw@h:1/0", "chunk_size": 256, "more": ["s3://b/p"]}
    assert redact_urls(dump) == {"remote_url": "redis://:***@h:1/0", "chunk_size": 256,
                                 "more": ["s3://b/p"]}


def test_redact_text():
    message = ("Client error '404 Not Found' for url 'https://h/p.json?token=abc' "
               "(via redis://u:pw@h:1)")
    assert redact_text(message) == ("Client error '404 Not Found' for url "
                                    "'https://h/p.json?token=***' (via redis://u:***@h:1)")
