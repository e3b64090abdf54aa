"""Vector indexes by name, for the config: `build_index("redis", url=...)`.

Each backend module is imported only when asked for, so `import hitrate` never pays for
numpy, redis, qdrant-client or psycopg.
"""

from __future__ import annotations

import importlib
from typing import Any

from hitrate.semantic.index import VectorIndex

# name -> (module, class, the extra that installs its client library)
_INDEXES: dict[str, tuple[str, str, str]] = {
    "embedded": ("hitrate.semantic.embedded_index", "EmbeddedIndex", "semantic"),
    "redis": ("hitrate.semantic.redis_index", "RedisIndex", "semantic-servers"),
    "qdrant": ("hitrate.semantic.qdrant_index", "QdrantIndex", "semantic-servers"),
    "pgvector": ("hitrate.semantic.pgvector_index", "PgvectorIndex", "semantic-servers"),
}
_ALIASES = {"local": "embedded", "postgres": "pgvector", "postgresql": "pgvector"}

INDEX_KINDS = tuple(_INDEXES)


def build_index(kind: str, **options: Any) -> VectorIndex:
    """A vector index of `kind` ("embedded", "redis", "qdrant", "pgvector"), constructed with
    `options` (the index class's keyword arguments). Connections open on first use."""
    name = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if name not in _INDEXES:
        raise ValueError(f"unknown vector index {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    module_name, class_name, extra = _INDEXES[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)(**options)
    except TypeError as exc:  # an option the index doesn't take
        raise ValueError(f"{name} vector index: {exc}") from exc
    except ImportError as exc:
        raise ImportError(f"the {name} vector index needs {exc.name or 'a missing package'}: "
                          f"pip install 'hitrate[{extra}]'") from exc
