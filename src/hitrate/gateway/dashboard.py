"""`GET /dashboard`: one self-contained HTML page (inline CSS, JS and SVG; no CDN, works
offline). It holds no data itself: its script polls `GET /cache/stats` with the master
key, which the user types in once (kept in the tab's sessionStorage) or passes as
`/dashboard#key=...` (a URL fragment never reaches the server or its logs).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

# The page needs nothing but itself and same-origin fetches.
_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@lru_cache(maxsize=1)
def html() -> bytes:
    return resources.files("hitrate.gateway").joinpath("static/dashboard.html").read_bytes()


async def page(request: Request) -> Response:
    return Response(html(), 200, headers=_HEADERS, media_type="text/html; charset=utf-8")
