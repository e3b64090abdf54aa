"""The semantic layer the engine consults after an exact miss.

Scope rule (DESIGN.md): a cached answer is a candidate only if everything but the last
user turn is identical - model, parameters, system prompt, earlier turns, namespace and
tenant. That context is hashed into the scope; only the last user turn is embedded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hitrate import keys
from hitrate.semantic import word_vectors
from hitrate.semantic.embedders import Embedder
from hitrate.semantic.explore import Explorer
from hitrate.semantic.index import Match, VectorIndex
from hitrate.semantic.judge import Band, Judge
from hitrate.semantic.learned import LearnedVerifier, Verdict, load_verifier
from hitrate.semantic.text import analyze
from hitrate.semantic.vectors import EmbedLimits, EmbedQueue, VectorCache
from hitrate.semantic.verifier import VerifierSettings, verify

if TYPE_CHECKING:
    from hitrate.config import SemanticConfig

log = logging.getLogger("hitrate.semantic")


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    top_k: int = 3
    verifier: VerifierSettings = field(default_factory=VerifierSettings)
    # The calibrated model; None: the hand-written vetoes (`verifier`) decide.
    learned: LearnedVerifier | None = None
    # Lowest cosine the index returns; None: the deciding verifier's own floor.
    min_similarity: float | None = None
    limits: EmbedLimits = field(default_factory=EmbedLimits)


@dataclass(slots=True)
class SemanticStats:
    lookups: int = 0
    hits: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    too_long: int = 0  # lookups skipped: text over the length cap
    timeouts: int = 0  # lookups that gave up waiting for their vector

    def skipped(self) -> dict[str, int]:
        return {"too_long": self.too_long, "timeouts": self.timeouts}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate the layer would serve: `sure` (the verifier alone decided), or not
    (inside the judge's band: served only if the judge says yes)."""

    match: Match
    score: float  # the verifier's score (the cosine under the rules)
    sure: bool = True


class PendingVector:
    """What `vector(text)` returns when the caller gives no scope: the embedding is
    computed once the scope is known (in `candidates` or `remember`), so the vector
    cache stays per tenant."""

    __slots__ = ("resolved", "text", "value")

    def __init__(self, text: str):
        self.text = text
        self.value: Any = None
        self.resolved = False


class SemanticLayer:
    def __init__(self, embedder: Embedder, index: VectorIndex,
                 settings: SemanticSettings | None = None, *, judge: Judge | None = None,
                 explorer: Explorer | None = None):
        self.embedder = embedder
        self.index = index
        self.settings = settings or SemanticSettings()
        self.judge = judge  # None: candidates in the uncertain band are misses
        self.explorer = explorer  # None: no per-entry thresholds, no exploration
        self.stats = SemanticStats()
        limits = self.settings.limits
        self.vectors = VectorCache(limits.cache_items)
        self.queue = EmbedQueue(embedder, limits.max_batch, limits.concurrency)
        self._tenants: OrderedDict[str, str] = OrderedDict()  # scope -> tenant digest
        self._background: set[asyncio.Task[None]] = set()

    def scope_of(self, kind: str, context: dict[str, Any], namespace: str, tenant: str) -> str:
        # The embedder's vector space is part of the scope: a persistent index written by
        # another embedder, or by this one reading texts otherwise, is never searched with
        # vectors it cannot be compared with (its entries are simply not found).
        scope = keys.digest({"kind": kind, "namespace": namespace, "tenant": tenant,
                             "context": context, "space": self.embedder.vector_space})
        self._tenants[scope] = keys.digest({"tenant": tenant})
        self._tenants.move_to_end(scope)
        if len(self._tenants) > self.settings.limits.cache_items:
            self._tenants.popitem(last=False)
        return scope

    def _tenant_of(self, scope: str) -> str:
        # A scope we no longer know: key by the scope itself (finer, still private).
        return self._tenants.get(scope, scope)

    async def warm(self) -> None:
        """Load the embedder and the tokenizers before the first request needs them."""
        from hitrate.semantic.embedders import LocalEmbedder

        try:
            if isinstance(self.embedder, LocalEmbedder):  # never a paid upstream call
                await self.embedder.embed(["warm up"])
            analyze("预热")  # jieba's dictionary loads on first use (~1 s)
            if self.settings.learned is not None:
                word_vectors.warm()  # ~0.7 s
        except Exception as exc:  # the first real lookup will report it
            log.debug("semantic warm-up failed: %s", exc)

    def embeddable(self, text: str) -> bool:
        return len(text) <= self.settings.limits.max_chars

    async def vector(self, text: str, scope: str | None = None) -> Any:
        """`text`'s unit vector, or None when it is too long or the deadline passed.
        Without `scope`: a `PendingVector`, embedded later under the right tenant."""
        if scope is None:
            return PendingVector(text)
        return await self._embed(text, scope, deadline=True)

    async def _embed(self, text: str, scope: str, deadline: bool) -> np.ndarray | None:
        if not self.embeddable(text):
            return None
        tenant = self._tenant_of(scope)
        vector = self.vectors.get(tenant, text)
        if vector is not None:
            return vector
        future = self.queue.embed(text)
        timeout = self.settings.limits.timeout if deadline else None
        try:
            vector = await asyncio.wait_for(future, timeout) if timeout else await future
        except TimeoutError:
            self.stats.timeouts += 1
            return None
        self.vectors.put(tenant, text, vector)
        return vector

    async def _resolve(self, vector: Any, scope: str) -> Any:
        if isinstance(vector, PendingVector):
            if not vector.resolved:
                vector.value = await self._embed(vector.text, scope, deadline=True)
                vector.resolved = True
            return vector.value
        return vector

    async def prefetch(self, items: Sequence[tuple[str, str]]) -> None:
        """Embed many (text, scope) pairs in batches, no deadline (bulk loads)."""
        todo = [(t, s) for t, s in dict.fromkeys(items)
                if self.embeddable(t) and self.vectors.get(self._tenant_of(s), t) is None]
        for i in range(0, len(todo), 64):
            chunk = todo[i:i + 64]
            vectors = await self.embedder.embed([t for t, _ in chunk])
            for (text, scope), vector in zip(chunk, vectors, strict=True):
                self.vectors.put(self._tenant_of(scope), text, vector)

    def prefill(self, text: str, scope: str, vector: np.ndarray) -> None:
        """Put a known vector in the cache (offline evaluation, bulk loads)."""
        self.vectors.put(self._tenant_of(scope), text, vector)

    @property
    def search_floor(self) -> float:
        """The lowest cosine the index returns as a candidate."""
        settings = self.settings
        own = (settings.learned.min_similarity if settings.learned is not None
               else settings.verifier.min_similarity)
        return max(own, settings.min_similarity or 0.0)

    def verdict(self, query: str, cached: str, similarity: float,
                vectors: tuple[Any, Any] | None = None) -> Verdict:
        """May the answer cached for `cached` be served for `query`? (`score`: the
        model's, for ranking candidates; the cosine under the rules.) In process: the
        verifier's inputs need no embedder call. `vectors`: both texts' embeddings,
        when known (see `pair_vectors`)."""
        learned = self.settings.learned
        if learned is None:
            verdict = verify(query, cached, similarity, self.settings.verifier)
            return Verdict(verdict.accept, verdict.reason, similarity)
        return learned.verify(query, cached, similarity, self.pair_vectors(vectors))

    def pair_vectors(self, vectors: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
        """The two embeddings for the learned verifier's vector model, or None when
        they are not from the embedder it was fitted on."""
        learned = self.settings.learned
        if (vectors is None or learned is None
                or not learned.reads_vectors_of(self.embedder.vector_space)):
            return None
        return vectors

    async def candidates(self, text: str, scope: str, vector: Any) -> list[tuple[Match, str]]:
        """Verified candidates, best first, as (match, reason='ok'). Empty when the
        text is too long to embed or its vector missed the deadline. (Candidates that
        need the judge are left out: see `scored_candidates`.)"""
        found = await self.scored_candidates(text, scope, vector)
        return [(c.match, "ok") for c in found if c.sure]

    async def scored_candidates(self, text: str, scope: str, vector: Any) -> list[Candidate]:
        """Candidates the layer would serve, the sure ones first, each group best first."""
        self.stats.lookups += 1
        if not self.embeddable(text):
            self.stats.too_long += 1
            return []
        vector = await self._resolve(vector, scope)
        if vector is None:
            return []
        matches = await self.index.search(vector, scope=scope, k=self.settings.top_k,
                                          min_score=self.search_floor)
        learned = self.settings.learned
        pairs = [self.pair_vectors((vector, m.vector)) for m in matches]
        if learned is None:
            verdicts = [self.verdict(text, m.text, m.score) for m in matches]
        else:
            settled = [learned.settle(text, m.text, m.score, pair)
                       for m, pair in zip(matches, pairs, strict=True)]
            if self.judge is None and self.explorer is None:
                # A candidate the rules accept is served first whatever the others score:
                # scoring them with the model would only cost time.
                ruled = [Candidate(m, v.score) for m, v in zip(matches, settled, strict=True)
                         if v is not None and v.accept]
                if ruled:
                    return ruled
            verdicts = [v if v is not None else learned.decide(text, m.text, m.score, pair)
                        for m, v, pair in zip(matches, settled, pairs, strict=True)]
        out = []
        rejected = self.stats.rejected
        for match, verdict, pair in zip(matches, verdicts, pairs, strict=True):
            sure = verdict.accept
            if self.judge is not None:
                decision = self._banded(text, match.text, verdict, pair)
                if decision is None:
                    rejected[verdict.reason if not verdict.accept else "judge_band"] += 1
                    continue
                sure = decision
            elif not sure:
                rejected[verdict.reason] += 1
                continue
            if self.explorer is not None and verdict.score < self.explorer.threshold(match.key):
                rejected["entry_threshold"] += 1  # this entry learned to need a closer question
                continue
            out.append(Candidate(match, verdict.score, sure))
        out.sort(key=lambda c: (not c.sure, -c.score))  # the surest paraphrase first
        return out

    def _banded(self, query: str, cached: str, verdict: Verdict,
                vectors: tuple[Any, Any] | None = None) -> bool | None:
        """With a judge: True = serve, False = ask the judge, None = refuse. Hard vetoes
        (numbers, negation, pronouns...; any veto under the rules) are never asked."""
        assert self.judge is not None
        learned = self.settings.learned
        if not verdict.accept and (learned is None or verdict.reason != "model"):
            return None
        if learned is not None:
            threshold = learned.threshold_of(query, cached, vectors)
            default_low = 0.5
        else:  # the rules: scores are cosines; ask about the accepted ones near the floor
            floor = self.search_floor
            threshold, default_low = floor + 0.03, floor
        low, high = self.judge.band.bounds(threshold, default_low)
        if verdict.score >= high:
            return True
        if verdict.score < low:
            return None
        return False

    async def remember(self, key: str, text: str, vector: Any, scope: str, namespace: str,
                       expires_at: float | None) -> None:
        """Index a stored entry. Without a ready vector (the lookup gave up, or never
        ran) it is embedded in the background, off the request's path."""
        if not self.embeddable(text):
            return
        if isinstance(vector, PendingVector):
            vector = vector.value if vector.resolved else None
        if vector is None:
            task = asyncio.get_running_loop().create_task(
                self._index_later(key, text, scope, namespace, expires_at))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        await self.index.add(key, vector, scope=scope, namespace=namespace, text=text,
                             expires_at=expires_at)

    async def _index_later(self, key: str, text: str, scope: str, namespace: str,
                           expires_at: float | None) -> None:
        try:
            vector = await self._embed(text, scope, deadline=False)
            if vector is not None:
                await self.index.add(key, vector, scope=scope, namespace=namespace, text=text,
                                     expires_at=expires_at)
        except Exception as exc:
            self.stats.errors += 1
            log.debug("semantic background indexing failed: %s", exc)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.judge is not None:
            self.judge.close()
        await self.index.close()
        await self.embedder.close()


def build_semantic(config: SemanticConfig, resolve_upstream: Any = None) -> SemanticLayer:
    """The semantic layer a `cache.semantic` config section asks for."""
    from hitrate.semantic.embedders import build_embedder
    from hitrate.semantic.indexes import build_index

    options = dict(config.index_options)
    if config.index == "embedded" and config.index_dir:
        options.setdefault("directory", config.index_dir)
    floor = config.similarity_threshold
    verifier = VerifierSettings(min_similarity=floor or VerifierSettings().min_similarity,
                                rewording_similarity=max(config.rewording_similarity,
                                                         floor or 0.0))
    learned = load_verifier(config.max_false_rate) if config.verifier == "learned" else None
    judge = None
    if config.judge is not None:
        if resolve_upstream is None or resolve_upstream(config.judge.model) is None:
            raise ValueError(f"semantic.judge.model {config.judge.model!r} is not in the "
                             "config's model list")
        low, high = config.judge.band or (None, None)
        judge = Judge(config.judge.model, resolve_upstream, band=Band(low, high),
                      timeout=config.judge.timeout_ms / 1000,
                      max_concurrency=config.judge.max_concurrency,
                      max_tokens=config.judge.max_tokens)
    explorer = None
    if config.explore_rate > 0:
        explorer = Explorer(config.explore_rate, budget=config.max_false_rate,
                            answer_similarity=config.explore_answer_similarity,
                            seed=config.explore_seed)
    return SemanticLayer(build_embedder(config.embedder, resolve_upstream),
                         build_index(config.index, **options),
                         SemanticSettings(top_k=config.top_k, verifier=verifier,
                                          learned=learned, min_similarity=floor,
                                          limits=EmbedLimits(
                                              max_chars=config.max_text_chars,
                                              timeout=config.embed_timeout_ms / 1000
                                              if config.embed_timeout_ms else None,
                                              max_batch=config.embed_batch,
                                              concurrency=config.embed_concurrency)),
                         judge=judge, explorer=explorer)
