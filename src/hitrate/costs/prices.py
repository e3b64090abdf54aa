"""Model prices and context windows: the bundled snapshot, overrides, and lookup by name.

The snapshot (`prices.json`, next to this file) is read from the package on first use:
no network, a few milliseconds. Layers, first match wins:

1. per-map overrides (a gateway's `costs.models` config),
2. process-wide registrations (`register_model(...)`),
3. the base map: the bundled snapshot, or a refreshed copy (see `refresh.py`).

Names are matched leniently, because the same model is spelled many ways:
`openai/gpt-4o-mini`, `gpt-4o-mini-2024-07-18`, `GPT-4o-mini` all find `gpt-4o-mini`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, overload

SCHEMA = "hitrate.prices/1"
# A single token costing more than this is a typo (per-1M prices written per token).
MAX_COST_PER_TOKEN = 0.01
_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{4})$")


class PriceMapError(ValueError):
    """A price document that is not usable as a whole."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per token; context windows in tokens (None: unknown)."""

    model: str
    input_cost_per_token: float
    output_cost_per_token: float
    cached_input_cost_per_token: float | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    provider: str | None = None
    mode: str | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """What a call with this usage costs upstream. Cached prompt tokens are billed at
        the cached-input price where the provider has one."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = (self.cached_input_cost_per_token
                        if self.cached_input_cost_per_token is not None
                        else self.input_cost_per_token)
        return ((prompt_tokens - cached) * self.input_cost_per_token
                + cached * cached_price + completion_tokens * self.output_cost_per_token)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _number(entry: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = entry.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        if not math.isfinite(value) or value < 0 or value > MAX_COST_PER_TOKEN:
            raise ValueError(f"{name}={value!r} is not a plausible USD-per-token price")
        return float(value)
    return None


def _tokens(entry: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = entry.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def parse_entry(name: str, entry: Any) -> ModelPrice | None:
    """One model's prices, in hitrate's or LiteLLM's field names.

    Returns None for entries that carry no per-token prices (image or audio models in a
    LiteLLM map); raises ValueError for entries that carry malformed ones.
    """
    if not isinstance(entry, dict):
        raise ValueError("must be a mapping")
    input_cost = _number(entry, "input_cost_per_token")
    output_cost = _number(entry, "output_cost_per_token")
    if input_cost is None and output_cost is None:
        return None
    cached = _number(entry, "cached_input_cost_per_token", "cache_read_input_token_cost")
    provider = entry.get("provider", entry.get("litellm_provider"))
    mode = entry.get("mode")
    return ModelPrice(
        model=name,
        input_cost_per_token=input_cost or 0.0,
        output_cost_per_token=output_cost or 0.0,
        cached_input_cost_per_token=cached,
        max_input_tokens=_tokens(entry, "max_input_tokens", "max_tokens"),
        max_output_tokens=_tokens(entry, "max_output_tokens", "max_tokens"),
        provider=provider if isinstance(provider, str) else None,
        mode=mode if isinstance(mode, str) else None,
    )


@dataclass(slots=True)
class ParsedMap:
    prices: dict[str, ModelPrice]
    updated: str | None
    rejected: int  # malformed entries dropped
    source: str

    @property
    def distinct_models(self) -> int:
        """Models, not names (`prices` also holds each model's aliases)."""
        return len({id(price) for price in self.prices.values()})


def parse_document(data: Any, source: str = "") -> ParsedMap:
    """A whole price document -> prices. Accepts hitrate's schema
    (`{"schema", "updated", "models": {...}}`) and LiteLLM's flat
    `model_prices_and_context_window.json`. Raises PriceMapError if it is neither."""
    if not isinstance(data, dict):
        raise PriceMapError("a price map must be a JSON object")
    if "models" in data:
        if data.get("schema", SCHEMA) != SCHEMA:
            raise PriceMapError(f"unknown price map schema {data.get('schema')!r}")
        models = data["models"]
        if not isinstance(models, dict):
            raise PriceMapError("`models` must be an object")
        updated = data.get("updated")
    else:
        models = {k: v for k, v in data.items() if k != "sample_spec"}
        updated = None
    prices: dict[str, ModelPrice] = {}
    rejected = 0
    for name, entry in models.items():
        try:
            price = parse_entry(name, entry)
        except ValueError:
            rejected += 1
            continue
        if price is None:
            continue
        prices[name] = price
        for alias in entry.get("aliases") or ():
            if isinstance(alias, str) and alias not in models:
                prices[alias] = price
    if rejected > len(prices):
        raise PriceMapError(f"{rejected} of {rejected + len(prices)} entries are malformed")
    return ParsedMap(prices, updated if isinstance(updated, str) else None, rejected, source)


_bundled: ParsedMap | None = None
_bundled_lock = threading.Lock()


def bundled() -> ParsedMap:
    """The snapshot shipped in the package (read once, on first use)."""
    global _bundled
    if _bundled is None:
        with _bundled_lock:
            if _bundled is None:
                text = resources.files("hitrate.costs").joinpath("prices.json").read_text()
                _bundled = parse_document(json.loads(text), "bundled")
    return _bundled


# Process-wide registrations (register_model); every PriceMap sees them.
_registered: dict[str, ModelPrice] = {}
_generation = [0]


@overload
def register_model(model: dict[str, Any]) -> dict[str, ModelPrice]: ...


@overload
def register_model(model: str, *, input_cost_per_token: float, output_cost_per_token: float,
                   cached_input_cost_per_token: float | None = None,
                   max_input_tokens: int | None = None, max_output_tokens: int | None = None,
                   provider: str | None = None) -> ModelPrice: ...


def register_model(
    model: str | dict[str, Any],
    *,
    input_cost_per_token: float | None = None,
    output_cost_per_token: float | None = None,
    cached_input_cost_per_token: float | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    provider: str | None = None,
) -> ModelPrice | dict[str, ModelPrice]:
    """Add or override a model's prices for this process (USD per token).

        hitrate.costs.register_model("my-finetune", input_cost_per_token=3e-6,
                                     output_cost_per_token=1.2e-5)

    or, as LiteLLM documents `litellm.register_model`, a dict of model name -> LiteLLM
    price-map entry (returns the registered prices by name):

        hitrate.costs.register_model({"my-finetune": {"input_cost_per_token": 3e-6,
            "output_cost_per_token": 1.2e-5, "max_tokens": 8192, "litellm_provider": "openai"}})
    """
    if isinstance(model, dict):
        if input_cost_per_token is not None or output_cost_per_token is not None:
            raise TypeError("register_model(dict) takes the prices inside the dict only")
        return _register_many(model)
    if input_cost_per_token is None or output_cost_per_token is None:
        raise TypeError("register_model(name, ...) needs input_cost_per_token and "
                        "output_cost_per_token")
    entry = {"input_cost_per_token": input_cost_per_token,
             "output_cost_per_token": output_cost_per_token,
             "cached_input_cost_per_token": cached_input_cost_per_token,
             "max_input_tokens": max_input_tokens, "max_output_tokens": max_output_tokens,
             "provider": provider}
    price = parse_entry(model, entry)
    assert price is not None
    _registered[model] = price
    _generation[0] += 1
    return price


def _register_many(models: dict[str, Any]) -> dict[str, ModelPrice]:
    """All or nothing: a malformed entry registers none of them."""
    parsed: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        try:
            price = parse_entry(name, entry)
        except ValueError as exc:
            raise ValueError(f"register_model: {name}: {exc}") from None
        if price is None:
            raise ValueError(f"register_model: {name}: no input_cost_per_token or "
                             "output_cost_per_token")
        parsed[name] = price
    _registered.update(parsed)
    _generation[0] += 1
    return parsed


def unregister_model(model: str) -> None:
    if _registered.pop(model, None) is not None:
        _generation[0] += 1


def candidate_names(model: str) -> list[str]:
    """Spellings to try, most specific first."""
    names = [model]
    lowered = model.lower()
    if lowered != model:
        names.append(lowered)
    for name in list(names):
        if "/" in name:
            names.append(name.split("/", 1)[1])
            names.append(name.rsplit("/", 1)[1])
    for name in list(names):
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped != name:
            names.append(stripped)
    seen: set[str] = set()
    return [n for n in names if not (n in seen or seen.add(n))]


class PriceMap:
    """Price lookup for one gateway (or the process default)."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None,
                 base: ParsedMap | None = None):
        self.overrides = dict(overrides or {})
        self._base = base
        self._cache: dict[str, ModelPrice | None] = {}
        self._seen_generation = _generation[0]

    @property
    def base(self) -> ParsedMap:
        if self._base is None:
            self._base = bundled()
        return self._base

    def set_base(self, base: ParsedMap) -> None:
        """Swap in a refreshed base map (called by the refresher, on the event loop)."""
        self._base = base
        self._cache = {}

    def get(self, model: str) -> ModelPrice | None:
        """The price for `model`, or None if unknown. Cached per name: cheap per hit."""
        if self._seen_generation != _generation[0]:
            self._cache = {}
            self._seen_generation = _generation[0]
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self._resolve(model)
        if len(self._cache) < 4096:
            self._cache[model] = price
        return price

    def _resolve(self, model: str) -> ModelPrice | None:
        base = self.base.prices
        for name in candidate_names(model):
            for layer in (self.overrides, _registered, base):
                price = layer.get(name)
                if price is not None:
                    return price
        return None

    def names(self) -> set[str]:
        return set(self.base.prices) | set(_registered) | set(self.overrides)


_default: PriceMap | None = None


def default_prices() -> PriceMap:
    """The process-wide map the library uses when no gateway config gives one."""
    global _default
    if _default is None:
        _default = PriceMap()
    return _default
