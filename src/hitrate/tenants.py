"""Per-tenant numbers: request outcomes (counted by the proxy) and what hits saved
(recorded by the engine), for `/cache/stats` per tenant and the opt-in `tenant` metric
label.

Tenant names come from authenticated keys only (the config or the admin API), never
from request bodies, and the tables are capped anyway: past `MAX_TENANTS` distinct
names, the rest fold into `OTHER`. Recording is a few dict operations, no lock.
"""

from __future__ import annotations

from collections import Counter

from hitrate.costs.savings import Savings, SavingsRow
from hitrate.metrics import OUTCOMES

MAX_TENANTS = 1000
OTHER = "(other)"  # not a valid tenant name, so it can't collide with one


def slot(table: dict[str, object], tenant: str) -> str:
    """The row `tenant` is counted in: its own, or `OTHER` once the table is full."""
    return tenant if tenant in table or len(table) < MAX_TENANTS else OTHER


class TenantRequests:
    """Requests by tenant and outcome (hit, miss, bypass, error)."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, Counter[str]] = {}

    def count(self, tenant: str, outcome: str) -> None:
        row = self.by_tenant.get(tenant)
        if row is None:
            name = slot(self.by_tenant, tenant)  # type: ignore[arg-type]
            row = self.by_tenant.get(name)
            if row is None:
                row = self.by_tenant[name] = Counter(dict.fromkeys(OUTCOMES, 0))
        row[outcome] += 1


class TenantSavings:
    """What hits saved, per tenant: one `Savings` table (per model and namespace) each.
    The engine prices a hit once (`Savings.record`) and adds that row here."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, Savings] = {}

    def add(self, tenant: str, namespace: str, model: str, row: SavingsRow) -> None:
        savings = self.by_tenant.get(tenant)
        if savings is None:
            name = slot(self.by_tenant, tenant)  # type: ignore[arg-type]
            savings = self.by_tenant.get(name)
            if savings is None:
                savings = self.by_tenant[name] = Savings()
        savings.row(model, namespace).add(row)
