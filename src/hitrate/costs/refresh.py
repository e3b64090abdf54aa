"""Optional price-map refresh: off by default, in the background, never trusted blindly.

A refresh fetches a document from a URL (http/https) or a file, parses it
(`prices.parse_document`), refuses it if it lost more than half the models of the map
in use (a truncated download, a wrong URL serving a stub), then writes it to a local
cache file and swaps it in. The cache file is the "last good copy": a restart loads it
first (no network), and fetches again only once it is older than `max_age`. Offline or
refused: keep what we have (last good copy, else the bundled snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hitrate.costs.prices import ParsedMap, PriceMap, PriceMapError, parse_document
from hitrate.redact import redact_text, redact_url

log = logging.getLogger("hitrate.costs")

SHRINK_LIMIT = 0.5
_RETRY_AFTER_FAILURE = 300.0


@dataclass(slots=True)
class RefreshResult:
    ok: bool
    models: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "models": self.models, "message": self.message}


class PriceRefresher:
    def __init__(self, prices: PriceMap, source: str, cache_file: str | os.PathLike[str],
                 max_age: float = 86400.0, timeout: float = 10.0):
        self.prices = prices
        self.source = source
        self.cache_file = Path(cache_file)
        self.max_age = max_age
        self.timeout = timeout
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # -- the last good copy ------------------------------------------------------

    def _cache_age(self) -> float | None:
        try:
            return time.time() - self.cache_file.stat().st_mtime
        except OSError:
            return None

    def load_cached(self) -> bool:
        """Use the last good copy if there is one (startup; a small local file)."""
        try:
            data = json.loads(self.cache_file.read_bytes())
            parsed = parse_document(data, f"cache:{self.cache_file}")
        except (OSError, ValueError) as exc:
            if self.cache_file.exists():
                log.warning("ignoring price cache %s: %s", self.cache_file, exc)
            return False
        if not parsed.prices:
            return False
        self.prices.set_base(parsed)
        return True

    def _write_cache(self, raw: bytes) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(self.cache_file.suffix + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, self.cache_file)

    # -- fetching ----------------------------------------------------------------

    async def _fetch(self) -> bytes:
        if self.source.startswith(("http://", "https://")):
            import httpx

            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as http:
                response = await http.get(self.source)
                response.raise_for_status()
                return response.content
        path = self.source.removeprefix("file://")
        return await asyncio.to_thread(Path(path).read_bytes)

    def _validate(self, raw: bytes) -> ParsedMap:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise PriceMapError(f"not JSON: {exc}") from None
        parsed = parse_document(data, redact_url(self.source))
        current = self.prices.base.distinct_models
        if parsed.distinct_models < current * SHRINK_LIMIT:
            raise PriceMapError(f"has {parsed.distinct_models} priced models, the map in use has "
                                f"{current}: refusing a map that shrank by more than half")
        return parsed

    async def refresh_once(self) -> RefreshResult:
        """Fetch, validate, swap, persist. Never raises."""
        self.last_attempt = time.time()
        try:
            raw = await self._fetch()
            parsed = self._validate(raw)
        except Exception as exc:
            self.last_error = redact_text(f"{type(exc).__name__}: {exc}")
            if not self._failing:
                log.warning("price map refresh from %s failed (%s); keeping %s",
                            redact_url(self.source), self.last_error, self.prices.base.source)
            self._failing = True
            return RefreshResult(False, self.prices.base.distinct_models, self.last_error)
        self.prices.set_base(parsed)
        self.last_success = time.time()
        self.last_error = None
        self._failing = False
        try:
            await asyncio.to_thread(self._write_cache, raw)
        except OSError as exc:  # a good map is still good without its local copy
            log.warning("cannot write price cache %s: %s", self.cache_file, exc)
        n = parsed.distinct_models
        log.info("price map refreshed from %s: %d models", redact_url(self.source), n)
        return RefreshResult(True, n, f"refreshed: {n} models"
                             + (f", {parsed.rejected} malformed entries dropped"
                                if parsed.rejected else ""))

    # -- background loop ---------------------------------------------------------

    async def start(self) -> None:
        """Load the last good copy, then refresh in the background when it is due."""
        await asyncio.to_thread(self.load_cached)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="price-refresh")

    async def _run(self) -> None:
        while True:
            age = self._cache_age()
            if self.last_success is not None:  # the cache file may be unwritable
                since = time.time() - self.last_success
                age = since if age is None else min(age, since)
            due = 0.0 if age is None else max(0.0, self.max_age - age)
            if self._failing:
                due = min(self.max_age, _RETRY_AFTER_FAILURE)
            await asyncio.sleep(due)
            await self.refresh_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        return {"source": redact_url(self.source), "cache_file": str(self.cache_file),
                "max_age": self.max_age, "last_attempt": self.last_attempt,
                "last_success": self.last_success, "last_error": self.last_error}
