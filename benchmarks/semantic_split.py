"""Deterministic fit / calibrate / test split of labelled pair files.

Pairs that share a text (PAWS-X and GPTCache reuse sentences across lines) are kept in
one part: texts linked by a line form a group, and a group's part comes from a hash of
its smallest text. So no sentence the verifier was fitted or calibrated on appears in
the test part. `semantic_train.py` fits on `fit`, picks the operating point on
`calibrate`; `semantic_eval.py --part test` reports on the rest.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

PARTS = {"fit": (0, 60), "calibrate": (60, 80), "test": (80, 100)}  # percent ranges

Row = tuple[str, str, int]


def read_pairs(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[2].strip() not in ("0", "1"):
            sys.exit(f"{path}:{number}: expected text_a<TAB>text_b<TAB>0|1")
        rows.append((parts[0], parts[1], int(parts[2])))
    return rows


def _groups(rows: list[Row]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in rows:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {text: root(text) for text in parent}


def part_of(group: str) -> str:
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in PARTS.items() if lo <= bucket < hi)


def split(rows: list[Row], part: str) -> list[Row]:
    """The rows of one part ('all' keeps every row)."""
    if part == "all":
        return rows
    group = _groups(rows)
    return [row for row in rows if part_of(group[row[0]]) == part]
