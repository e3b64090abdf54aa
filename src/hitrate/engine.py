"""The response cache: plan, lookup (with request coalescing), store.

Protocol-agnostic: it sees canonical requests and decoded response objects, never
HTTP. The gateway and the in-process client wrapper both drive it through
`hitrate.gateway.proxy`, so caching logic lives here and nowhere else.

Lifecycle: `lookup(plan)` answers a hit, or hands back a `Pending` that the caller
settles exactly once, with `await pending.store(response, ...)` or `pending.abandon()`
(both idempotent; a second call is a no-op). The engine owns the in-flight table, so
coalesced followers are released whatever the caller does. `lookup_batch` does the same
for batched kinds (embeddings): one entry per input item, the missing ones filled later.

Failure rule: a store that raises is a miss (or a skipped store), counted and logged
once per failure episode, never an error for the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hitrate import keys, kinds, tracing
from hitrate.controls import Controls, Mode
from hitrate.costs.savings import Savings
from hitrate.entry import CorruptEntry, Entry, decode, encode
from hitrate.key_settings import KeySettings, effective_controls
from hitrate.metrics import LOOKUP_BUCKETS, Histogram
from hitrate.stores.base import ByteStore
from hitrate.stores.episodes import FailureEpisodes
from hitrate.tenants import TenantSavings

if TYPE_CHECKING:
    from hitrate.costs.prices import PriceMap
    from hitrate.kinds import EndpointKind
    from hitrate.semantic.lookup import SemanticLayer

log = logging.getLogger("hitrate.engine")


@dataclass(slots=True)
class Plan:
    """What the cache will do for one request (or one embedding input)."""

    kind: EndpointKind
    key: str
    request: dict[str, Any]
    lookup: bool
    store: bool
    ttl: float | None
    max_age: float | None
    namespace: str
    # Semantic lookup: the last user turn, the digest of everything else, its vector.
    semantic_text: str | None = None
    semantic_scope: str | None = None
    vector: Any = None
    tenant: str | None = None  # who asked, for per-tenant savings (not part of the key)
    # A would-be semantic hit sent upstream anyway (semantic.explore_rate): (entry key,
    # verifier score, cached entry), compared with the fresh answer when it is settled.
    explored: tuple[str, float, Entry] | None = None

    @property
    def status_if_not_hit(self) -> str:
        return "miss" if self.lookup else "bypass"


@dataclass(slots=True)
class Flight:
    """An upstream call in progress that identical requests may wait on."""

    key: str
    future: asyncio.Future[Entry | None]
    waiters: int = 0


class Pending:
    """A miss (or bypass) the caller answers from upstream, then settles once.

    `store(response, ...)` applies the storage policy, releases any coalesced followers
    with the answer (or without it, if it may not be stored) and writes it;
    `abandon()` releases followers without storing (errors, broken streams,
    disconnects). Whichever comes first wins; later calls do nothing.
    """

    __slots__ = ("_cache", "_flight", "plan", "settled")

    def __init__(self, cache: ResponseCache, plan: Plan, flight: Flight | None):
        self._cache = cache
        self._flight = flight
        self.plan = plan
        self.settled = False

    async def store(self, response: dict[str, Any], *, latency_ms: float = 0.0,
                    model: str = "", response_bytes: bytes | None = None) -> bool:
        """Stores `response` if policy allows; returns whether it was stored."""
        if self.settled:
            return False
        self.settled = True
        plan = self.plan
        entry: Entry | None = Entry(plan.key, plan.kind.name, response,
                                    upstream_latency_ms=latency_ms, model=model,
                                    response_bytes=response_bytes)
        cache = self._cache
        if cache._rejected(plan, entry):
            entry = None  # not for waiters either
        cache._release(self._flight, entry)
        if plan.explored is not None and entry is not None:
            await cache._observe(plan, entry)
        if entry is None or not plan.store:
            return False
        return await cache._write(plan, entry)

    def abandon(self) -> None:
        if not self.settled:
            self.settled = True
            self._cache._release(self._flight)


@dataclass(slots=True)
class Lookup:
    entry: Entry | None = None
    coalesced: bool = False
    pending: Pending | None = None  # set on a miss or bypass: settle it once
    similarity: float | None = None  # set on semantic hits


@dataclass(slots=True)
class BatchLookup:
    """A batched kind's lookup: one plan and one (maybe missing) entry per input item."""

    cache: ResponseCache
    plans: list[Plan]
    entries: list[Entry | None]
    bypassed: bool

    @property
    def missing(self) -> list[int]:
        return [i for i, entry in enumerate(self.entries) if entry is None]

    @property
    def status(self) -> str:
        """`hit` when every item was cached, else `miss` / `bypass`."""
        if not self.missing:
            return "hit"
        return "bypass" if self.bypassed else "miss"

    def age(self) -> float:
        return max((e.age() for e in self.entries if e is not None), default=0.0)

    async def fill(self, responses: Sequence[dict[str, Any]], *, latency_ms: float = 0.0,
                   model: str = "") -> int:
        """Answers for the missing items, in order; stores those the policy allows.
        Returns how many were stored."""
        slots = self.missing
        if len(responses) != len(slots):
            raise ValueError(f"{len(responses)} answers for {len(slots)} missing items")
        pairs = []
        for slot, response in zip(slots, responses, strict=True):
            plan = self.plans[slot]
            entry = Entry(plan.key, plan.kind.name, response, upstream_latency_ms=latency_ms,
                          model=model)
            self.entries[slot] = entry
            pairs.append((plan, entry))
        return await self.cache.put_many(pairs)


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    coalesced: int = 0
    stores: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    corrupt: int = 0
    backend_errors: int = 0
    semantic_hits: int = 0  # part of `hits`
    backend_errors_by_op: Counter[str] = field(default_factory=Counter)
    lookup_seconds: Histogram = field(default_factory=lambda: Histogram(LOOKUP_BUCKETS))
    savings: Savings = field(default_factory=Savings)  # tokens, money, latency per hit
    tenants: TenantSavings = field(default_factory=TenantSavings)  # the same, per tenant


class ResponseCache:
    """Exact-match response cache over one byte store (process memory by default).

    `ttl` is the default storage TTL in seconds (None: keep until evicted);
    `mode="default_off"` caches only requests that send `use-cache: true`.
    `prices` values the hits (default: the bundled price map); entries in
    `shared_namespaces` are shared by every tenant (`scope` is ignored there).
    """

    def __init__(
        self,
        store: ByteStore | None = None,
        *,
        ttl: float | None = None,
        namespace: str = "default",
        mode: Mode = "default_on",
        coalesce: bool = True,
        prices: PriceMap | None = None,
        shared_namespaces: Iterable[str] = (),
        semantic: SemanticLayer | None = None,
        kinds: Iterable[str] | None = None,
    ):
        if not keys.valid_namespace(namespace):
            raise ValueError(f"invalid namespace {namespace!r}")
        if store is None:
            from hitrate.stores.memory import MemoryStore

            store = MemoryStore()
        self.store = store
        self.default_ttl = ttl
        self.namespace = namespace
        self.mode: Mode = mode
        self.coalesce = coalesce
        self.stats = CacheStats()
        if prices is not None:
            self.stats.savings.prices = prices
        self.shared_namespaces = frozenset(shared_namespaces)
        self.semantic = semantic
        if semantic is not None and semantic.judge is not None:
            semantic.judge.savings = self.stats.savings  # its calls cost: net savings
        # Endpoint kinds this cache serves (None: all); the others always bypass it.
        self.kinds = None if kinds is None else frozenset(kinds)
        self._semantic_failing = False
        self._inflight: dict[str, Flight] = {}
        self._episodes = FailureEpisodes(store.name, log)

    # -- planning ----------------------------------------------------------------

    def enabled_for(self, controls: Controls, kind: EndpointKind | None = None) -> bool:
        if kind is not None and self.kinds is not None and kind.name not in self.kinds:
            return False
        return controls.enabled(self.mode)

    def allowed(self, controls: Controls, settings: KeySettings) -> Controls:
        """`controls` as a key's cache settings allow them, with this cache's defaults
        (`hitrate.key_settings`); raises `ControlForbidden` for a control the key may
        not send."""
        return effective_controls(controls, settings, default_ttl=self.default_ttl,
                                  default_namespace=self.namespace,
                                  shared_namespaces=self.shared_namespaces)

    def plan(
        self, kind: EndpointKind | str, request: dict[str, Any], controls: Controls, *,
        scope: str = "", headers: Mapping[str, str] | None = None, tenant: str | None = None
    ) -> Plan:
        """`request` is the body without the `cache` object; the key is its canonical form,
        plus `headers` that change the answer (a kind's forwarded headers, e.g.
        `anthropic-beta`). `tenant` only labels the stats (`scope` is what isolates
        entries)."""
        kind = kinds.get(kind) if isinstance(kind, str) else kind
        canonical = keys.canonical_request(request, kind.excluded_fields)
        if headers:
            canonical["#headers"] = dict(headers)
        plan = self._plan_canonical(kind, canonical, request, controls, scope=scope)
        plan.tenant = tenant
        return plan

    def _plan_canonical(
        self,
        kind: EndpointKind,
        canonical: Any,
        request: dict[str, Any],
        controls: Controls,
        *,
        scope: str = "",
        namespace: str | None = None,
    ) -> Plan:
        namespace = namespace or controls.namespace or self.namespace
        if scope and namespace in self.shared_namespaces:
            scope = ""  # an explicitly shared namespace: one entry for every tenant
        plan = Plan(
            kind=kind,
            key=keys.make_key(kind.name, namespace, canonical, scope),
            request=request,
            lookup=not controls.no_cache,
            store=not controls.no_store,
            ttl=controls.ttl if controls.ttl is not None else self.default_ttl,
            max_age=controls.max_age,
            namespace=namespace,
        )
        if self.semantic is not None and kind.semantic_split is not None:
            parts = kind.semantic_split(canonical)
            if parts is not None:
                plan.semantic_text = parts[0]
                plan.semantic_scope = self.semantic.scope_of(kind.name, parts[1], namespace,
                                                             scope)
        return plan

    # -- backend access (never raises) -------------------------------------------

    def _backend_error(self, op: str, exc: BaseException) -> None:
        self.stats.backend_errors += 1
        self.stats.backend_errors_by_op[op] += 1
        self._episodes.failed(op, exc)  # logged once per episode, reads and writes apart

    def _backend_ok(self, op: str) -> None:
        self._episodes.succeeded(op)

    @property
    def backend_failing(self) -> bool:
        return self._episodes.failing

    def _valid(self, plan: Plan, raw: bytes | None, now: float) -> Entry | None:
        if raw is None:
            return None
        try:
            entry = decode(raw, expected_key=plan.key)
        except CorruptEntry as exc:
            self.stats.corrupt += 1
            log.debug("corrupt entry %s: %s", plan.key, exc)
            self._drop_bad(plan)
            return None
        if entry.expired(now) or plan.kind.rejection(plan.request, entry.response):
            self._drop_bad(plan)
            return None
        if plan.max_age is not None and entry.age(now) > plan.max_age:
            return None  # too old for this client; still fine for others
        return entry

    def _drop_bad(self, plan: Plan) -> None:
        """Delete a bad value, unless this request is about to overwrite it anyway: a
        background delete landing after that store would throw the fresh answer away."""
        if not plan.store:
            self._schedule_delete(plan.key)

    def _schedule_delete(self, key: str) -> None:
        if self.semantic is not None:
            self._spawn(self._forget(key))

        async def _delete() -> None:
            try:
                await self.store.delete(key)
            except Exception as exc:
                self._backend_error("delete", exc)

        task = asyncio.get_running_loop().create_task(_delete())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def get(self, plan: Plan) -> Entry | None:
        started = time.perf_counter()
        try:
            raw = await self.store.get(plan.key)
        except Exception as exc:
            self._backend_error("get", exc)
            return None
        self.stats.lookup_seconds.observe(time.perf_counter() - started)
        self._backend_ok("get")
        return self._valid(plan, raw, time.time())

    async def get_many(self, plans: Sequence[Plan]) -> list[Entry | None]:
        if not plans:
            return []
        started = time.perf_counter()
        try:
            raws = await self.store.get_many([p.key for p in plans])
        except Exception as exc:
            self._backend_error("get_many", exc)
            return [None] * len(plans)
        self.stats.lookup_seconds.observe(time.perf_counter() - started)
        self._backend_ok("get_many")
        now = time.time()
        return [self._valid(p, raw, now) for p, raw in zip(plans, raws, strict=True)]

    def _rejected(self, plan: Plan, entry: Entry) -> bool:
        """The storage policy, counted once per answer."""
        reason = plan.kind.rejection(plan.request, entry.response)
        if reason:
            self.stats.rejected[reason] += 1
        return reason is not None

    @staticmethod
    def _encode_for(plan: Plan, entry: Entry) -> tuple[str, bytes, float | None]:
        entry.key = plan.key
        if plan.ttl:
            entry.expires_at = entry.created_at + plan.ttl
        return plan.key, encode(entry), plan.ttl

    def _prepare(self, plan: Plan, entry: Entry) -> tuple[str, bytes, float | None] | None:
        return None if self._rejected(plan, entry) else self._encode_for(plan, entry)

    async def put(self, plan: Plan, entry: Entry) -> bool:
        """Stores if policy allows. Returns whether it was stored."""
        if not plan.store or self._rejected(plan, entry):
            return False
        return await self._write(plan, entry)

    async def _write(self, plan: Plan, entry: Entry) -> bool:
        """Stores an answer that already passed the policy."""
        with tracing.span("hitrate.cache.store"):
            return await self._write_traced(plan, entry)

    async def _write_traced(self, plan: Plan, entry: Entry) -> bool:
        item = self._encode_for(plan, entry)
        try:
            await self.store.set(*item)
        except Exception as exc:
            self._backend_error("set", exc)
            return False
        self._backend_ok("set")
        self.stats.stores += 1
        if plan.semantic_text is not None:
            if plan.vector is not None:
                await self._remember(plan, entry)  # cheap: the lookup embedded it already
            else:
                self._spawn(self._remember(plan, entry))  # no-cache: embed off the hot path
        return True

    async def put_many(self, pairs: Sequence[tuple[Plan, Entry]]) -> int:
        items = [item for plan, entry in pairs if plan.store and (item := self._prepare(plan, entry))]
        if not items:
            return 0
        try:
            with tracing.span("hitrate.cache.store"):
                await self.store.set_many(items)
        except Exception as exc:
            self._backend_error("set_many", exc)
            return 0
        self._backend_ok("set_many")
        self.stats.stores += len(items)
        return len(items)

    def _saved(self, plan: Plan, entry: Entry, latency_ms: float | None = None) -> None:
        one = self.stats.savings.record(plan.namespace, entry, latency_ms)
        if plan.tenant is not None:
            self.stats.tenants.add(plan.tenant, plan.namespace, entry.model, one)

    def count_batch(self, plans: Sequence[Plan], entries: Sequence[Entry | None],
                    bypassed: bool) -> None:
        """Stats for a batch looked up with `get_many` (embedding inputs): each found
        item is a hit; the upstream latency counts as saved only if every item hit."""
        found = [(p, e) for p, e in zip(plans, entries, strict=True) if e is not None]
        missing = len(plans) - len(found)
        self.stats.hits += len(found)
        if bypassed:
            self.stats.bypasses += missing
        else:
            self.stats.misses += missing
        saved = max((e.upstream_latency_ms for _, e in found), default=0.0) if not missing else 0.0
        for i, (plan, entry) in enumerate(found):
            self._saved(plan, entry, latency_ms=saved if i == 0 else 0.0)

    async def lookup_batch(self, kind: EndpointKind, request: dict[str, Any], field: str,
                           items: Sequence[Any], controls: Controls, *,
                           scope: str = "", tenant: str | None = None) -> BatchLookup:
        """One entry per item of `request[field]` (embedding inputs): each keyed by the
        rest of the request plus that item. Counted here: found items are hits."""
        base = {k: v for k, v in request.items() if k != field}
        canonical_base = keys.canonical_request(base, kind.excluded_fields)
        plans = [self._plan_canonical(kind, {**canonical_base, field: item}, base, controls,
                                      scope=scope) for item in items]
        for plan in plans:
            plan.tenant = tenant
        if controls.no_cache:
            entries: list[Entry | None] = [None] * len(plans)
        else:
            with tracing.span("hitrate.cache.exact_lookup"):
                entries = await self.get_many(plans)
        self.count_batch(plans, entries, bypassed=controls.no_cache)
        return BatchLookup(self, plans, entries, controls.no_cache)

    # -- lookup with coalescing ----------------------------------------------------

    async def lookup(self, plan: Plan) -> Lookup:
        """Cache read, else join an identical in-flight request, else lead a new one.

        Anything but a hit comes back with `Lookup.pending`, which the caller must
        settle (`store` or `abandon`) whatever happens (use try/finally). Followers of
        a leader that failed go to the upstream on their own, without coalescing
        again, so one bad upstream answer cannot chain N requests one after another.
        """
        if plan.lookup:
            with tracing.span("hitrate.cache.exact_lookup"):
                entry = await self.get(plan)
            if entry is not None:
                self.stats.hits += 1
                self._saved(plan, entry)
                return Lookup(entry=entry)
            flight = self._inflight.get(plan.key) if self.coalesce else None
            if flight is not None:
                flight.waiters += 1
                entry = await asyncio.shield(flight.future)
                if entry is not None:
                    self.stats.hits += 1
                    self.stats.coalesced += 1
                    # Tokens and money saved; the latency was mostly waited out.
                    self._saved(plan, entry, latency_ms=0.0)
                    return Lookup(entry=entry, coalesced=True)
                self.stats.misses += 1
                return Lookup(pending=Pending(self, plan, None))
            # Lead before the (slow) semantic lookup, so identical requests arriving
            # while we embed wait for us instead of each going upstream.
            flight = self._lead(plan)
            try:
                found = await self._semantic_lookup(plan)
            except BaseException:
                self._release(flight)
                raise
            if found is not None:
                self._release(flight, found.entry)  # followers get the paraphrase's answer
                return found
            self.stats.misses += 1
            return Lookup(pending=Pending(self, plan, flight))
        self.stats.bypasses += 1
        return Lookup(pending=Pending(self, plan, self._lead(plan)))

    def _lead(self, plan: Plan) -> Flight | None:
        if not (self.coalesce and plan.store) or plan.key in self._inflight:
            return None
        flight = Flight(plan.key, asyncio.get_running_loop().create_future())
        self._inflight[plan.key] = flight
        return flight

    # -- semantic ----------------------------------------------------------------

    def _semantic_error(self, op: str, exc: BaseException) -> None:
        assert self.semantic is not None
        self.semantic.stats.errors += 1
        if not self._semantic_failing:
            self._semantic_failing = True
            log.warning("semantic %s failing (%s: %s); serving exact-match only", op,
                        type(exc).__name__, exc)

    async def _semantic_lookup(self, plan: Plan) -> Lookup | None:
        """After an exact miss: a verified paraphrase in the same scope, or None."""
        semantic = self.semantic
        if semantic is None or plan.semantic_text is None or plan.semantic_scope is None:
            return None
        try:
            with tracing.span("hitrate.semantic.embed"):  # per tenant: no timing oracle
                plan.vector = await semantic.vector(plan.semantic_text, plan.semantic_scope)
            with tracing.span("hitrate.semantic.search"):  # vector search + verification
                candidates = await semantic.scored_candidates(
                    plan.semantic_text, plan.semantic_scope, plan.vector)
                if tracing.active():
                    tracing.set_attributes({"hitrate.semantic.candidates": len(candidates)})
        except Exception as exc:
            self._semantic_error("lookup", exc)
            return None
        self._semantic_failing = False
        judged = False
        for candidate in candidates:
            match = candidate.match
            other = Plan(plan.kind, match.key, plan.request, True, False, None, plan.max_age,
                         plan.namespace)
            entry = await self.get(other)
            if entry is None:
                self._spawn(self._forget(match.key))  # its entry expired or was evicted
                continue
            if not candidate.sure:
                if judged or semantic.judge is None:
                    continue  # one judge call per lookup at most: bounded wait
                judged = True
                with tracing.span("hitrate.semantic.judge", client=True):
                    same = await semantic.judge.same(plan.semantic_scope, plan.semantic_text,
                                                     match.text)
                if not same:
                    continue
            explorer = semantic.explorer
            if explorer is not None and explorer.explore():
                plan.explored = (match.key, candidate.score, entry)
                return None  # goes upstream; the answers are compared in Pending.store
            self.stats.hits += 1
            self.stats.semantic_hits += 1
            semantic.stats.hits += 1
            self._saved(plan, entry)
            return Lookup(entry=entry, similarity=match.score)
        return None

    async def _observe(self, plan: Plan, fresh: Entry) -> None:
        """An explored lookup's fresh answer against the cached one it would have served:
        the entry's own threshold learns from whether they agree."""
        semantic = self.semantic
        assert semantic is not None and semantic.explorer is not None
        assert plan.explored is not None
        key, score, cached = plan.explored
        plan.explored = None
        explorer = semantic.explorer
        agreed = explorer.agree_exactly(cached.response, fresh.response)
        if not agreed and explorer.answer_similarity is not None:
            try:
                agreed = await self._answers_close(cached, fresh, explorer.answer_similarity)
            except Exception as exc:
                explorer.stats.explored["error"] += 1
                log.debug("comparing explored answers failed: %s", exc)
                return
        explorer.observe(key, score, agreed)

    async def _answers_close(self, cached: Entry, fresh: Entry, minimum: float) -> bool:
        from hitrate.semantic.explore import answer_text, cosine

        semantic = self.semantic
        assert semantic is not None
        cap = semantic.settings.limits.max_chars  # a long answer: its beginning
        a, b = (answer_text(e.response)[:cap] for e in (cached, fresh))
        if not a or not b:
            return False
        va, vb = await semantic.embedder.embed([a, b])
        return cosine(va, vb) >= minimum

    async def _remember(self, plan: Plan, entry: Entry) -> None:
        """Index a stored entry's last user turn so paraphrases can find it."""
        semantic = self.semantic
        if semantic is None or plan.semantic_text is None or plan.semantic_scope is None:
            return
        try:
            if plan.vector is None:
                plan.vector = await semantic.vector(plan.semantic_text, plan.semantic_scope)
            await semantic.remember(plan.key, plan.semantic_text, plan.vector,
                                    plan.semantic_scope, plan.namespace, entry.expires_at)
        except Exception as exc:
            self._semantic_error("index", exc)

    async def _forget(self, key: str) -> None:
        if self.semantic is not None:
            if self.semantic.explorer is not None:
                self.semantic.explorer.forget(key)
            try:
                await self.semantic.index.delete(key)
            except Exception as exc:
                self._semantic_error("delete", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)

    def _release(self, flight: Flight | None, entry: Entry | None = None) -> None:
        """Resolve a flight: its followers get `entry` (None: they go upstream)."""
        if flight is None:
            return
        if self._inflight.get(flight.key) is flight:
            del self._inflight[flight.key]
        if not flight.future.done():
            flight.future.set_result(entry)

    # -- admin -------------------------------------------------------------------

    async def inspect(self, key: str) -> Entry | None:
        """The entry stored under `key` (admin look-up; no stats, no validation beyond
        decoding). Raises what the store raises."""
        raw = await self.store.get(key)
        if raw is None:
            return None
        try:
            return decode(raw, expected_key=key)
        except CorruptEntry:
            return None

    async def delete(self, key: str) -> bool:
        await self._forget(key)
        return await self.store.delete(key)

    async def clear(self, namespace: str | None = None) -> int:
        prefix = keys.namespace_prefix(namespace) if namespace else keys.ALL_KEYS_PREFIX
        if self.semantic is not None:
            if self.semantic.explorer is not None:
                self.semantic.explorer.forget(prefix=prefix)
            try:
                await self.semantic.index.clear(namespace)
            except Exception as exc:
                self._semantic_error("clear", exc)
        return await self.store.clear(prefix)

    async def close(self) -> None:
        if self.semantic is not None:
            await self.semantic.close()
        await self.store.close()


# Strong references to fire-and-forget tasks (asyncio keeps only weak ones).
_background: set[asyncio.Task[None]] = set()
