"""Secrets out of URLs before they are printed or logged.

`redact_url("redis://default:s3cret@host:6379/0?token=abc")` ->
`"redis://default:***@host:6379/0?token=***"`: the password of the userinfo and the value
of any query parameter that looks like a credential are replaced; everything an operator
needs to recognise the endpoint (scheme, user, host, port, path) stays.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
_SECRET_PARAMS = frozenset({
    "password", "passwd", "pwd", "pass", "token", "access_token", "auth", "auth_token",
    "secret", "client_secret", "api_key", "apikey", "key", "sig", "signature", "sas",
    "credential", "x-amz-signature", "x-amz-security-token", "x-amz-credential",
    "sentinel_password",
})
# Fallback for strings urlsplit cannot take apart: `scheme://user:secret@`.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*):[^@/\s]*@")


def redact_url(url: str) -> str:
    """`url` with its password and credential-like query values masked."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            netloc = f"{user}:{MASK}@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
                query = urlencode([(name, MASK if name.lower() in _SECRET_PARAMS else value)
                                   for name, value in pairs], safe="*")
        # Not urlunsplit: it drops the empty authority of unix:///path.
        return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
                + (f"#{parts.fragment}" if parts.fragment else ""))
    except ValueError:  # an invalid port, a broken IPv6 literal...
        return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """Every URL inside a message (an exception's text, a log line) redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m[0]), text)


def redact_urls(value: object) -> object:
    """A copy of a JSON-like value (settings dumps) with every URL string redacted."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_urls(v) for v in value]
    return value
