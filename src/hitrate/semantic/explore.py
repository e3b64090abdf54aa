"""vCache-style online thresholds: each entry learns how close a question must be to reuse it.

With probability `rate`, a would-be semantic hit goes upstream anyway (the client gets
the fresh answer: it is a miss). The fresh answer is compared with the cached one
(normalised exact match, or, if `answer_similarity` is set, the cosine of the two
answers' embeddings at or above it), and the observation (verifier score, agreed?) is
kept with the entry. An entry with no disagreement follows the global threshold; after a
disagreement at score s it is served only at scores above s, until enough agreements at
or above some lower score keep the false share within the budget (the same small-sample
bound as the offline calibration, `learned.threshold_for`): lowering is slow on purpose.

The per-entry state lives in this process's memory only (bounded, least recently used
out): a restart, or another replica, starts every entry from the global threshold again.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_OBSERVATIONS = 256  # per entry, the most recent (one disagreement needs ~82 agreements at a 2% budget)


@dataclass(slots=True)
class EntryRecord:
    scores: list[float] = field(default_factory=list)
    false: list[bool] = field(default_factory=list)
    threshold: float = -math.inf  # -inf: the global threshold alone decides


@dataclass(slots=True)
class ExploreStats:
    explored: Counter[str] = field(default_factory=Counter)  # agree / disagree / error


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def answer_text(response: Any) -> str:
    """The text a response answers with, whatever the API shape: message contents, tool
    call names and arguments, completion texts, Responses and Anthropic content blocks.
    Ids, timestamps and usage are left out (they differ on every call)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("content", "text", "arguments", "name", "refusal", "input",
                           "output_text") and isinstance(item, str):
                    out.append(item)
                elif key not in ("id", "created", "created_at", "usage", "model",
                                 "system_fingerprint", "logprobs", "call_id"):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if isinstance(response, dict):
        for key in ("choices", "output", "content"):
            walk(response.get(key))
    return "\n".join(out)


class Explorer:
    def __init__(self, rate: float, *, budget: float = 0.02,
                 answer_similarity: float | None = None, seed: int | None = None,
                 max_entries: int = 100_000):
        self.rate = rate
        self.budget = budget
        self.answer_similarity = answer_similarity
        self.stats = ExploreStats()
        self.entries: OrderedDict[str, EntryRecord] = OrderedDict()
        self._random = random.Random(seed)
        self._max_entries = max_entries

    def explore(self) -> bool:
        """Should this would-be hit go upstream anyway?"""
        return self.rate > 0 and self._random.random() < self.rate

    def threshold(self, key: str) -> float:
        record = self.entries.get(key)
        return -math.inf if record is None else record.threshold

    def forget(self, key: str | None = None, prefix: str | None = None) -> None:
        if key is not None:
            self.entries.pop(key, None)
        elif prefix is None:
            self.entries.clear()
        else:
            for stale in [k for k in self.entries if k.startswith(prefix)]:
                del self.entries[stale]

    def agree_exactly(self, cached: Any, fresh: Any) -> bool:
        return _normal(answer_text(cached)) == _normal(answer_text(fresh))

    def observe(self, key: str, score: float, agreed: bool) -> None:
        """One explored candidate of entry `key` at verifier score `score`."""
        self.stats.explored["agree" if agreed else "disagree"] += 1
        record = self.entries.get(key)
        if record is None:
            if agreed:
                return  # nothing to learn yet: the global threshold already serves it
            record = self.entries[key] = EntryRecord()
            if len(self.entries) > self._max_entries:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        record.scores.append(score)
        record.false.append(not agreed)
        del record.scores[:-MAX_OBSERVATIONS], record.false[:-MAX_OBSERVATIONS]
        record.threshold = self._learned(record)

    def _learned(self, record: EntryRecord) -> float:
        from hitrate.semantic.learned import threshold_for

        if not any(record.false):
            return -math.inf
        scores, false = np.asarray(record.scores), np.asarray(record.false)
        # Just above the highest disagreement, unless the observations at or above some
        # lower score (that disagreement among them) are within the budget.
        above = math.nextafter(float(scores[false].max()), math.inf)
        return min(above, threshold_for(scores, false, self.budget))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))
