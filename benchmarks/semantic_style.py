"""Does the verifier judge what is asked, or how it is typed?

Each labelled pair of a file is verified three times: as written, with both texts typed
casually (lower case, no final question mark or full stop) and with both typed formally
(a capital first letter, a final question mark). A verifier that reads meaning gives
about the same verdicts in all three; prints one JSON line per style with the hits, false
hits and false share, pair by pair (as `semantic_eval.py --protocol pair`, without the
index: the similarity floor, the rules and the model).

    python benchmarks/semantic_style.py benchmarks/pairs/en_questions_train.tsv --part test
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from semantic_split import read_pairs, split
from semantic_train import Embeddings, casual, formal

from hitrate.semantic.learned import load_verifier

STYLES: dict[str, Callable[[str], str]] = {"as_written": lambda t: t, "casual": casual,
                                           "formal": formal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--part", default="all", choices=("all", "fit", "calibrate", "test"))
    parser.add_argument("--vectors", type=Path, default=Path("/tmp/hitrate-e5-vectors.npz"),
                        help="e5 vectors of the texts (computed and added when missing)")
    parser.add_argument("--model", help="another verifier model file")
    args = parser.parse_args()
    rows = read_pairs(args.pairs)
    rows = rows if args.part == "all" else split(rows, args.part)
    verifier = load_verifier(path=args.model)
    emb = Embeddings(args.vectors)
    for name, style in STYLES.items():
        pairs = [(style(b), style(a), y) for a, b, y in rows]
        texts = list(dict.fromkeys(t for q, c, _ in pairs for t in (q, c)))
        vectors = dict(zip(texts, emb.get(texts), strict=True))
        hits = false = 0
        for query, cached, label in pairs:
            if query == cached:
                continue
            vq, vc = vectors[query], vectors[cached]
            cosine = float(vq @ vc)
            if verifier.verify(query, cached, cosine, (vq, vc)).accept:
                hits += 1
                false += label == 0
        print(json.dumps({"file": args.pairs.name, "part": args.part, "style": name,
                          "pairs": len(pairs), "hits": hits, "false": false,
                          "false_share": round(false / max(1, hits), 4)}))
    emb.save()


if __name__ == "__main__":
    main()
