"""hitrate: stop paying twice for LLM work already done.

Library use (the gateway runs the same engine):

    import hitrate, openai
    cache = hitrate.Cache(ttl=3600)                       # memory; or store=hitrate.DiskStore(dir)
    client = hitrate.cached_client(openai.OpenAI(), cache)

Attributes load lazily so that `import hitrate` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cache": ("hitrate.engine", "ResponseCache"),
    "ResponseCache": ("hitrate.engine", "ResponseCache"),
    "cached_client": ("hitrate.client", "cached_client"),
    "MemoryStore": ("hitrate.stores.memory", "MemoryStore"),
    "DiskStore": ("hitrate.stores.disk", "DiskStore"),
    "ByteStore": ("hitrate.stores.base", "ByteStore"),
    "Config": ("hitrate.config", "Config"),
    "load_config": ("hitrate.config", "load_config"),
    "create_app": ("hitrate.gateway.app", "create_app"),
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from hitrate.client import cached_client
    from hitrate.config import Config, load_config
    from hitrate.engine import ResponseCache
    from hitrate.engine import ResponseCache as Cache
    from hitrate.gateway.app import create_app
    from hitrate.stores.base import ByteStore
    from hitrate.stores.disk import DiskStore
    from hitrate.stores.memory import MemoryStore


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hitrate' has no attribute {name!r}")
