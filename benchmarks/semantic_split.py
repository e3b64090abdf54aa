"""Deterministic fit / calibrate / test split of labelled pair files.

A line's part comes from a hash of its text_a. PAWS-X and GPTCache reuse sentences
across lines, so a fit or calibrate line that shares a text with a later part's line is
dropped: no sentence the verifier was fitted or calibrated on appears in the test part
(and none it was fitted on in the calibrate part). `semantic_train.py` fits on `fit`,
picks the operating point on `calibrate`; `semantic_eval.py --part test` reports on
the rest.
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


def part_of(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in PARTS.items() if lo <= bucket < hi)


def split(rows: list[Row], part: str) -> list[Row]:
    """The rows of one part ('all' keeps every row). A line belongs to the part of its
    text_a; a line of an earlier part that shares a text with a later part is dropped
    (test > calibrate > fit), so no test sentence is ever fitted or calibrated on."""
    if part == "all":
        return rows
    order = list(PARTS)
    line_part = [part_of(a) for a, _, _ in rows]
    later: dict[str, set[str]] = {name: set() for name in order}
    for (a, b, _), name in zip(rows, line_part, strict=True):
        for earlier in order[: order.index(name)]:
            later[earlier].update((a, b))
    return [row for row, name in zip(rows, line_part, strict=True)
            if name == part and row[0] not in later[part] and row[1] not in later[part]]
