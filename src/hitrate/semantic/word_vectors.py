"""Static word vectors for the words two texts do not share (`features.differing_words`).

Whether a swap keeps the meaning (kid / child: 0.81) or changes what is asked (newborn /
toddler: 0.26, become a professional pianist / learn piano) is read from WordLlama's
static token vectors (`l2_supercat`, 256 dimensions; the weights ship inside the PyPI
package, nothing is downloaded). A pair costs about 0.05 ms in-process, so a lookup never
sends these snippets to the embedder: the cold semantic hit pays one embedder call, and
the verifier's inputs do not depend on which embedder a tenant configured.

Chosen by measurement (`benchmarks/semantic_train.py`, out-of-fold on the training pairs,
English questions): recall at a 2% false share 25.6% and AUC 0.975 with these vectors,
21.1% and 0.973 with e5's cosine of the same snippets, which cost a second forward pass.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

NAME = "wordllama-l2_supercat-256"

_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
    global _model
    with _lock:
        if _model is None:
            import wordllama
            from wordllama import WordLlama

            _model = WordLlama.load(config="l2_supercat", dim=256, disable_download=True,
                                    cache_dir=os.path.dirname(wordllama.__file__))
    return _model


def warm() -> None:
    """Load the vectors (~0.7 s) before the first lookup needs them."""
    _load()


@lru_cache(maxsize=16384)
def _vector(snippet: str) -> Any:
    """The snippet's mean token vector, unit length (None when it has no tokens), as
    `WordLlama.embed(norm=True)` computes it. One text at a time through the tokenizer:
    `embed`'s batch call costs 0.1 ms of set-up per pair, half of a cold lookup's
    verification of five candidates (profiled); the stored text's snippets recur."""
    import numpy as np

    model = _load()
    ids = np.asarray(model.tokenizer.encode(snippet, add_special_tokens=False).ids, np.int64)
    if ids.size == 0:
        return None
    vector = model.embedding[np.clip(ids, 0, model.embedding.shape[0] - 1)].mean(
        axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else None


@lru_cache(maxsize=16384)
def cosine(a: str, b: str) -> float:
    """Cosine of the two snippets' mean token vectors (0 if either has none)."""
    va, vb = _vector(a), _vector(b)
    return 0.0 if va is None or vb is None else float(va @ vb)
