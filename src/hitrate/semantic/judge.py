"""The optional judge: a cheap chat model asked whether two questions need the same answer.

Only candidates whose verifier score falls inside an uncertain band are asked (above the
band they are served, below it they are not). A judge that fails, times out, is busy or
answers anything but a clear "yes" is a miss: never an error for the client and never a
wait beyond `timeout` seconds. Verdicts are cached per (scope, text pair), so a pair is
asked once; concurrent lookups of the same pair share one call. Its token cost goes into
the engine's savings (`Savings.spend`), so net savings subtract what the judge costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from hitrate.costs.savings import Savings

log = logging.getLogger("hitrate.semantic")

# The simulator (`hitrate.simulator`) recognises judge calls by this system prompt.
SYSTEM_PROMPT = ("Do these two user questions require the same answer? Reply yes or no.")
OUTCOMES = ("yes", "no", "unclear", "error", "timeout")
MAX_VERDICTS = 65_536


def user_prompt(query: str, cached: str) -> str:
    return f"Question 1: {cached}\nQuestion 2: {query}"


def parse_reply(content: Any) -> str:
    """'yes' / 'no' from the reply's first word, else 'unclear' (counted as a miss)."""
    if not isinstance(content, str):
        return "unclear"
    head = content.strip().lower().lstrip("\"'*`").split(maxsplit=1)
    word = head[0].rstrip(".,!:;\"'*`") if head else ""
    return word if word in ("yes", "no") else "unclear"


@dataclass(slots=True)
class JudgeStats:
    calls: Counter[str] = field(default_factory=Counter)  # by outcome (OUTCOMES)
    reused: int = 0  # verdicts served from the pair cache (no call)
    busy: int = 0  # candidates not asked: every slot in use (served as misses)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


@dataclass(frozen=True, slots=True)
class Band:
    """Verifier scores asked about: [low, high). None: relative to the verifier's own
    threshold (`low` default 0.5 for the learned verifier, `high` the threshold)."""

    low: float | None = None
    high: float | None = None

    def bounds(self, threshold: float, default_low: float) -> tuple[float, float]:
        low = default_low if self.low is None else self.low
        return low, threshold if self.high is None else self.high


class Judge:
    def __init__(self, model: str, resolve_upstream: Callable[[str], Any], *,
                 band: Band | None = None, timeout: float = 2.0, max_concurrency: int = 8,
                 max_tokens: int = 2):
        self.model = model
        self.band = band or Band()
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.stats = JudgeStats()
        self.savings: Savings | None = None  # set by the engine that owns the layer
        self._resolve = resolve_upstream
        self._slots = max_concurrency
        self._verdicts: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
        self._asking: dict[tuple[str, str, str], asyncio.Task[bool | None]] = {}

    async def same(self, scope: str, query: str, cached: str) -> bool:
        """True only on a clear "yes" (from the cache or a call within the timeout)."""
        pair = (scope, query, cached)
        verdict = self._verdicts.get(pair)
        if verdict is not None:
            self._verdicts.move_to_end(pair)
            self.stats.reused += 1
            return verdict
        task = self._asking.get(pair)
        if task is None:
            if len(self._asking) >= self._slots:
                self.stats.busy += 1
                return False
            task = asyncio.get_running_loop().create_task(self._ask(pair))
            self._asking[pair] = task
            task.add_done_callback(lambda _: self._asking.pop(pair, None))
        # Shielded: a client that disconnects does not cancel the call others share.
        return bool(await asyncio.shield(task))

    def close(self) -> None:
        """Shutdown: calls still in flight are cancelled (their lookups are long gone)."""
        for task in list(self._asking.values()):
            task.cancel()

    async def _ask(self, pair: tuple[str, str, str]) -> bool | None:
        _, query, cached = pair
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await self._call(query, cached)
        except TimeoutError:
            outcome = "timeout"
        except Exception as exc:
            log.debug("semantic judge call failed: %s: %s", type(exc).__name__, exc)
            outcome = "error"
        self.stats.calls[outcome] += 1
        if outcome not in ("yes", "no"):
            return None  # not remembered: a later lookup may ask again
        self._verdicts[pair] = verdict = outcome == "yes"
        if len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)
        return verdict

    async def _call(self, query: str, cached: str) -> str:
        from hitrate import kinds

        upstream = self._resolve(self.model)
        if upstream is None:
            raise LookupError(f"judge model {self.model!r} is not in the model list")
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": user_prompt(query, cached)}]}
        reply = await upstream.post(kinds.get("chat"), body)
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}")
        response = orjson.loads(reply.content)
        self._count_usage(response)
        return parse_reply(response["choices"][0]["message"]["content"])

    def _count_usage(self, response: dict[str, Any]) -> None:
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        self.stats.prompt_tokens += prompt
        self.stats.completion_tokens += completion
        if self.savings is not None:
            cost = self.savings.spend("judge", self.model, prompt, completion)
            if cost is None:
                self.stats.unpriced_calls += 1
            else:
                self.stats.cost_usd += cost
