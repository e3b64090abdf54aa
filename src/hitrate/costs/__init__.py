"""Model prices (bundled snapshot, offline), optional refresh, and what hits saved.

    from hitrate.costs import register_model, default_prices
    register_model("my-model", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    default_prices().get("gpt-4o-mini").cost(prompt_tokens=1000, completion_tokens=200)
"""

from __future__ import annotations

from hitrate.costs.prices import (
    ModelPrice,
    PriceMap,
    PriceMapError,
    bundled,
    default_prices,
    register_model,
    unregister_model,
)

__all__ = ["ModelPrice", "PriceMap", "PriceMapError", "bundled", "default_prices",
           "register_model", "unregister_model"]
