"""What cache hits saved: tokens, money and upstream latency, per model and namespace.

Recorded by the engine on every hit (a few dict operations, no I/O, no lock), read by
the metrics collector and the admin API. The number of (model, namespace) rows is
capped: namespaces come from clients, and an unbounded label set would blow up
Prometheus; past the cap, rows fold into ("other", "other").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hitrate import kinds

if TYPE_CHECKING:
    from hitrate.costs.prices import PriceMap
    from hitrate.entry import Entry

MAX_ROWS = 200
OTHER = ("other", "other")


@dataclass(slots=True)
class SavingsRow:
    hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    unpriced_hits: int = 0  # hits whose model has no known price (cost counted as 0)

    def add(self, other: SavingsRow) -> None:
        self.hits += other.hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.latency_ms += other.latency_ms
        self.unpriced_hits += other.unpriced_hits

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost_usd": self.cost_usd,
                "latency_seconds": self.latency_ms / 1000, "unpriced_hits": self.unpriced_hits}


@dataclass(slots=True)
class SpentRow:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


def usage_of(entry: Entry) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of a stored response, read the way its
    endpoint kind reports usage; zeros if the upstream did not report it (a stream
    stored without `include_usage`) or the kind is unknown to this version."""
    try:
        kind = kinds.get(entry.kind)
    except KeyError:
        return 0, 0, 0
    return kind.usage(entry.response)


class Savings:
    def __init__(self, prices: PriceMap | None = None,
                 aliases: dict[str, str] | None = None):
        self._prices = prices
        self.aliases = aliases or {}  # client-facing model name -> upstream model id
        self.rows: dict[tuple[str, str], SavingsRow] = {}
        # What the cache itself spent upstream (the semantic judge), by purpose: net
        # savings are the hits' `cost_usd` minus these.
        self.spent: dict[str, SpentRow] = {}

    @property
    def prices(self) -> PriceMap:
        if self._prices is None:
            from hitrate.costs.prices import default_prices

            self._prices = default_prices()
        return self._prices

    @prices.setter
    def prices(self, value: PriceMap) -> None:
        self._prices = value

    def row(self, model: str, namespace: str) -> SavingsRow:
        key = (model or "unknown", namespace)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= MAX_ROWS:
                key = OTHER
                row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = SavingsRow()
        return row

    def price_of(self, model: str):  # -> ModelPrice | None
        """A model's price by its config name, else by the upstream id it aliases."""
        price = self.prices.get(model) if model else None
        if price is None and model in self.aliases:
            price = self.prices.get(self.aliases[model])
        return price

    def spend(self, purpose: str, model: str, prompt: int, completion: int) -> float | None:
        """A call the cache made on its own behalf; returns its cost (None: unpriced)."""
        row = self.spent.get(purpose)
        if row is None:
            row = self.spent[purpose] = SpentRow()
        row.calls += 1
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        price = self.price_of(model)
        if price is None:
            row.unpriced_calls += 1
            return None
        cost = price.cost(prompt, completion)
        row.cost_usd += cost
        return cost

    def spent_usd(self) -> float:
        return sum(row.cost_usd for row in self.spent.values())

    def price_for(self, entry: Entry):  # -> ModelPrice | None
        prices = self.prices
        price = prices.get(entry.model) if entry.model else None
        if price is None and entry.model in self.aliases:
            price = prices.get(self.aliases[entry.model])
        if price is None:
            served = entry.response.get("model")
            if isinstance(served, str) and served:
                price = prices.get(served)
        return price

    def record(self, namespace: str, entry: Entry,
               latency_ms: float | None = None) -> SavingsRow:
        """One hit on `entry`. `latency_ms` defaults to the entry's upstream latency;
        pass 0 when no whole upstream call was avoided (a coalesced follower waited for
        it; an embedding item whose batch still went upstream). Returns the hit's own
        row (for per-tenant tables, which add it without pricing it again)."""
        prompt, completion, cached = usage_of(entry)
        one = SavingsRow(1, prompt, completion, 0.0,
                         entry.upstream_latency_ms if latency_ms is None else latency_ms)
        price = self.price_for(entry)
        if price is None:
            one.unpriced_hits = 1
        else:
            one.cost_usd = price.cost(prompt, completion, cached)
        self.row(entry.model, namespace).add(one)
        return one

    def add(self, model: str, namespace: str, row: SavingsRow) -> None:
        self.row(model, namespace).add(row)

    def totals(self) -> SavingsRow:
        total = SavingsRow()
        for row in self.rows.values():
            total.add(row)
        return total
