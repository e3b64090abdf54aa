"""The semantic layer the engine consults after an exact miss.

Scope rule (DESIGN.md): a cached answer is a candidate only if everything but the last
user turn is identical - model, parameters, system prompt, earlier turns, namespace and
tenant. That context is hashed into the scope; only the last user turn is embedded.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hitrate import keys
from hitrate.semantic.embedders import Embedder
from hitrate.semantic.index import Match, VectorIndex
from hitrate.semantic.verifier import VerifierSettings, verify

if TYPE_CHECKING:
    from hitrate.config import SemanticConfig

log = logging.getLogger("hitrate.semantic")


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    top_k: int = 3
    verifier: VerifierSettings = field(default_factory=VerifierSettings)


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if (isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict)
            and content[0].get("type") == "text" and isinstance(content[0].get("text"), str)):
        return content[0]["text"]
    return None


def split_request(kind: str, canonical: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(text to embed, the rest of the request) or None if not eligible."""
    if kind == "chat":
        messages = canonical.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "user":
            return None
        text = _text_of(last.get("content"))
        if not text or not text.strip():
            return None
        rest_of_last = {k: v for k, v in last.items() if k != "content"}
        return text, {**canonical, "messages": [*messages[:-1], rest_of_last]}
    if kind == "completion":
        prompt = canonical.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        return prompt, {k: v for k, v in canonical.items() if k != "prompt"}
    return None


@dataclass(slots=True)
class SemanticStats:
    lookups: int = 0
    hits: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: int = 0


class SemanticLayer:
    def __init__(self, embedder: Embedder, index: VectorIndex,
                 settings: SemanticSettings | None = None):
        self.embedder = embedder
        self.index = index
        self.settings = settings or SemanticSettings()
        self.stats = SemanticStats()

    def scope_of(self, kind: str, context: dict[str, Any], namespace: str, tenant: str) -> str:
        return keys.digest({"kind": kind, "namespace": namespace, "tenant": tenant,
                            "context": context})

    async def warm(self) -> None:
        """Load the embedder and the tokenizers before the first request needs them."""
        from hitrate.semantic.embedders import CachedEmbedder, LocalEmbedder
        from hitrate.semantic.text import analyze

        inner = self.embedder.inner if isinstance(self.embedder, CachedEmbedder) else self.embedder
        try:
            if isinstance(inner, LocalEmbedder):  # never spend a paid upstream call on this
                await inner.embed(["warm up"])
            analyze("预热")  # jieba's dictionary loads on first use (~1 s)
        except Exception as exc:  # the first real lookup will report it
            log.debug("semantic warm-up failed: %s", exc)

    async def vector(self, text: str) -> Any:
        return (await self.embedder.embed([text]))[0]

    async def candidates(self, text: str, scope: str, vector: Any) -> list[tuple[Match, str]]:
        """Verified candidates, best first, as (match, reason='ok')."""
        self.stats.lookups += 1
        settings = self.settings.verifier
        matches = await self.index.search(vector, scope=scope, k=self.settings.top_k,
                                          min_score=settings.min_similarity)
        out = []
        for match in matches:
            verdict = verify(text, match.text, match.score, settings)
            if verdict.accept:
                out.append((match, verdict.reason))
            else:
                self.stats.rejected[verdict.reason] += 1
        return out

    async def remember(self, key: str, text: str, vector: Any, scope: str, namespace: str,
                       expires_at: float | None) -> None:
        await self.index.add(key, vector, scope=scope, namespace=namespace, text=text,
                             expires_at=expires_at)

    async def close(self) -> None:
        await self.index.close()
        await self.embedder.close()


def build_semantic(config: SemanticConfig, resolve_upstream: Any = None) -> SemanticLayer:
    """The semantic layer a `cache.semantic` config section asks for."""
    from hitrate.semantic.embedders import build_embedder
    from hitrate.semantic.indexes import build_index

    options = dict(config.index_options)
    if config.index == "embedded" and config.index_dir:
        options.setdefault("directory", config.index_dir)
    verifier = VerifierSettings(min_similarity=config.similarity_threshold,
                                rewording_similarity=max(config.rewording_similarity,
                                                         config.similarity_threshold))
    return SemanticLayer(build_embedder(config.embedder, resolve_upstream),
                         build_index(config.index, **options),
                         SemanticSettings(top_k=config.top_k, verifier=verifier))
