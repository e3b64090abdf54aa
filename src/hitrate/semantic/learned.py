"""The learned verifier: a calibrated model over `features.py`, run at a false-hit budget.

The model (a logistic regression over the pair features, or a one-hidden-layer net) and
its calibration data ship in `verifier_model.json`, written by
`benchmarks/semantic_train.py` from pair sets whose licences allow it. Calibration keeps
the scores of held-out candidate pairs and whether each was a false match, pooled over
languages ("all") or per pair kind (a script's questions, and its statements, which
have a model of their own: `LearnedVerifier.pair_kind`), and each pair's writing batch.
The threshold for a budget `max_false_rate` is one that kept the budget on writing
batches left out of its choice (`unseen_writer_threshold`, precomputed per budget in the
model file); a calibration without batches takes the lowest score at which the share of
false matches among accepted calibration pairs (with a small-sample margin) stays within
the budget.

English questions also have a second model (`vector_model`) that reads, besides those
features, the elementwise product and absolute difference of the two texts' embeddings:
a learned weighting of the embedding's dimensions (the product's is a diagonal bilinear
similarity), which tells "How long should I keep my cat indoors after moving?" from
"How long do indoor cats live?" better than their cosine does (out of fold, English
questions: recall at a 2% false share 19% -> 44%). It needs the vectors of the embedder
it was fitted on; with another embedder, or an index that returns no stored vectors, the
pair goes to the first model.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hitrate.semantic import word_vectors
from hitrate.semantic.features import NAMES, PRONOUNS, SCRIPTS, features, words
from hitrate.semantic.text import Analysis, analyze
from hitrate.semantic.verifier import VerifierSettings, verify

MODEL_PATH = Path(__file__).with_name("verifier_model.json")


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    reason: str
    score: float = 0.0


WILSON_Z = 0.5  # the bound's z (one-sided ~70%)
# The budgets a calibration with writer folds has a threshold for (`unseen_writer_table`);
# a budget in between uses the nearest one below it.
BUDGET_GRID = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2)
# What a threshold may aim for, below the budget, and the bound's z (`unseen_writer_threshold`).
AIMS = (0.2, 0.15, 0.1, 0.075, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.01, 0.0075, 0.005,
        0.0025)
MARGINS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def _upper_false_rate(false: np.ndarray, total: np.ndarray, z: float = WILSON_Z) -> np.ndarray:
    """Wilson upper bound on the false share: a threshold is not chosen on the luck of a
    handful of accepted pairs."""
    total = np.maximum(total, 1)
    p = false / total
    centre = p + z * z / (2 * total)
    margin = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre + margin) / (1 + z * z / total)


def threshold_for(scores: np.ndarray, false: np.ndarray, budget: float,
                  z: float = WILSON_Z) -> float:
    """Lowest score threshold whose accepted calibration pairs stay within `budget`."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0 or budget <= 0:
        return math.inf
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    false_so_far = np.cumsum(np.asarray(false)[order].astype(int))
    accepted = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold accepts all ties together
    ok = last_of_tie & (_upper_false_rate(false_so_far, accepted, z) <= budget)
    return float(s[ok].min()) if ok.any() else math.inf


def unseen_writer_outcome(scores: np.ndarray, false: np.ndarray, folds: np.ndarray,
                          aim: float, z: float = WILSON_Z) -> tuple[int, int]:
    """Each fold's pairs accepted by the threshold the other folds give for `aim`, and
    how many of them are false, pooled over folds: what writers the calibration never
    saw get."""
    accepted = wrong = 0
    for k in np.unique(folds):
        held = folds == k
        taken = scores[held] >= threshold_for(scores[~held], false[~held], aim, z)
        accepted += int(taken.sum())
        wrong += int((taken & (false[held] == 1)).sum())
    return accepted, wrong


@dataclass(frozen=True, slots=True)
class UnseenWriterThreshold:
    threshold: float
    aim: float  # the false share aimed for on the calibration pairs
    z: float
    accepted: int  # held-out writers' pairs accepted under the other writers' thresholds
    false: int


def unseen_writer_threshold(scores: np.ndarray, false: np.ndarray, folds: np.ndarray,
                            budget: float) -> UnseenWriterThreshold:
    """The lowest threshold that would have kept `budget` on writers it never saw.

    A threshold set for the budget on the calibration pairs (the aim = the budget, z =
    0.5) let 5.6-8.2% false hits through on a batch of new writers' English questions,
    against 2%: the pairs that score highest differ between writers more than one
    calibration set shows. So each candidate way of choosing it (a lower aim, a wider
    bound: `AIMS` x `MARGINS`) is tried leaving out one fold (a writing batch) at a time;
    a candidate qualifies if the held-out folds' pairs it accepts, pooled, are some and
    within the budget; the lowest threshold of a qualifying candidate, on all the pairs,
    wins. None qualifies: the model never accepts (inf). A larger budget never gets a
    higher threshold: whatever qualifies for a budget qualifies for a larger one."""
    folds = np.asarray(folds)
    false = np.asarray(false).astype(int)
    best = UnseenWriterThreshold(math.inf, 0.0, WILSON_Z, 0, 0)
    for aim in (budget, *(a for a in AIMS if a < budget)):
        for z in MARGINS:
            accepted, wrong = unseen_writer_outcome(scores, false, folds, aim, z)
            if not accepted or wrong > budget * accepted:
                continue
            threshold = threshold_for(scores, false, aim, z)
            if threshold < best.threshold:
                best = UnseenWriterThreshold(threshold, aim, z, accepted, wrong)
    return best


def unseen_writer_table(data: dict) -> list[list[float]]:
    """[budget, threshold] for each of `BUDGET_GRID` (`unseen_writer_threshold`): what the
    model file keeps for a calibration with writer folds."""
    scores, false = calibration_scores(data), np.asarray(data["false"])
    folds = np.asarray(data["folds"])
    table, lowest = [], math.inf
    for budget in BUDGET_GRID:
        lowest = min(lowest, unseen_writer_threshold(scores, false, folds, budget).threshold)
        table.append([budget, lowest])
    return table


def calibrated_threshold(data: dict, budget: float) -> float:
    """A calibration's threshold for `budget`: from its unseen-writer table where the
    model file has one (the nearest budget of the grid at or below this one), else the
    threshold that keeps the budget on the calibration pairs themselves."""
    table = data.get("unseen_writer_thresholds")
    if table is None:
        return threshold_for(calibration_scores(data), np.asarray(data["false"]), budget)
    below = [threshold for grid, threshold in table if grid <= budget + 1e-12]
    return float(below[-1]) if below else math.inf


def calibration_scores(data: dict) -> np.ndarray:
    """A calibration's scores. The file keeps their logits (4 decimals): rounded as
    probabilities, a confident model's scores near 1 became ties that a threshold could
    not split (English statements: 184 pairs at 1.0, 6 of them false)."""
    logits = np.asarray(data["logits"], dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-logits))


# Each script's statement kind (`LearnedVerifier.pair_kind`): a model and calibration of
# its own where the model file has them.
STATEMENT_KINDS = {"latin": "latin_statement", "zh": "zh_statement"}
# The hand-written guards that run before the model (`LearnedVerifier.rules`). A model
# file's `guards_off` names, per script, those whose pairs it was fitted on instead
# (Chinese negation: out of fold the guard cost more paraphrases than it saved).
# "pronoun": who is asked about changed; "self": in Chinese or Japanese, a first-person
# pronoun on one side only (为什么我的电脑开不了机 / 电脑开不了机是什么原因), which
# search-box questions add or drop freely: on the Chinese training pairs it vetoes 168
# paraphrases against 49 other questions (leaving it to the model gained nothing out of
# fold: on, as before).
GUARDS = ("numbers", "symbols", "negation", "pronoun", "self")


def guards_by_script(off: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    """The guards that run per script, given those a model file turns off."""
    unknown = {g for names in off.values() for g in names} - set(GUARDS)
    if unknown or set(off) - set(SCRIPTS):
        raise ValueError(f"verifier model names unknown guards or scripts: "
                         f"{sorted(unknown | (set(off) - set(SCRIPTS)))}")
    return {script: frozenset(GUARDS) - set(off.get(script, ())) for script in SCRIPTS}


VECTOR_INPUTS = "product,absdiff"  # what `vector_features` appends; the model file names it


def vector_features(base: np.ndarray, vectors: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The vector model's input: the pair features, then the embeddings' elementwise
    product and absolute difference."""
    query = np.asarray(vectors[0], dtype=np.float64)
    cached = np.asarray(vectors[1], dtype=np.float64)
    return np.concatenate([base, query * cached, np.abs(query - cached)])


@dataclass(frozen=True, slots=True)
class FittedModel:
    """One fitted model: standardisation, then layers (one: logistic regression)."""
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, data: dict) -> FittedModel:
        return cls(np.asarray(data["mean"]), np.asarray(data["scale"]),
                   [(np.asarray(w), np.asarray(b)) for w, b in data["layers"]])

    def logit(self, x: np.ndarray) -> float:
        x = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return float(np.clip(x[0], -30, 30))

    def score(self, x: np.ndarray) -> float:
        return _sigmoid(self.logit(x))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True, slots=True)
class FoldEnsemble:
    """The cross-fitted models themselves, scored by their mean logit. Its threshold is
    chosen on each calibration pair's score from the one fold model that never saw it,
    so it is calibrated on the models it runs, not on a model fitted to all the data:
    with the vector model's 800 inputs, the latter is more confident on unseen pairs
    than its fold models were (train file's test part, fitted on every English pair:
    5 false hits in 75; the ensemble: 3 in 69)."""
    folds: list[FittedModel]

    def score(self, x: np.ndarray) -> float:
        return _sigmoid(sum(model.logit(x) for model in self.folds) / len(self.folds))


def fitted(data: dict) -> FittedModel | FoldEnsemble:
    """A model file's model: one fitted model, or its fold models (`"folds"`)."""
    if "folds" in data:
        return FoldEnsemble([FittedModel.of(f) for f in data["folds"]])
    return FittedModel.of(data)


class LearnedVerifier:
    def __init__(self, model: dict, max_false_rate: float = 0.02):
        if model["features"] != list(NAMES) or model.get("word_vectors") != word_vectors.NAME:
            raise ValueError("verifier model was trained on other features; retrain it "
                             "with benchmarks/semantic_train.py")
        self.model = model
        # A model per script where one was fitted (English questions and Chinese ones
        # are told apart by different evidence), the pooled one otherwise.
        pooled = FittedModel.of(model)
        by_script = {s: fitted(d) for s, d in model.get("by_script", {}).items()}
        self.models = {script: by_script.get(script, pooled) for script in SCRIPTS}
        # Pair kinds with a model of their own (statements), else their script's.
        self.kind_models = {k: m for k, m in by_script.items() if k not in SCRIPTS}
        self.min_similarity = float(model["min_similarity"])
        # The guards the model was fitted with, per script (pairs they decide were never
        # fitted on): the same ones must run in front of it.
        self.guards = guards_by_script(model.get("guards_off", {}))
        self.max_false_rate = max_false_rate
        self.thresholds: dict[str, float] = {}
        for script, data in model["calibration"].items():
            self.thresholds[script] = calibrated_threshold(data, max_false_rate)
        # Scripts without their own calibration: the pooled one ("all"), else the
        # strictest of the others.
        pooled_threshold = self.thresholds.pop("all", None)
        strictest = max((t for k, t in self.thresholds.items() if k in SCRIPTS),
                        default=math.inf)
        for script in SCRIPTS:
            self.thresholds.setdefault(script, strictest if pooled_threshold is None
                                       else pooled_threshold)
        # Statements without a calibration of their own: their script's questions' one.
        for script, statement in STATEMENT_KINDS.items():
            self.thresholds.setdefault(statement, self.thresholds[script])
        vector_model = model.get("vector_model") or {}
        if vector_model and vector_model.get("inputs") != VECTOR_INPUTS:
            raise ValueError("verifier model's vector model was trained on other inputs; "
                             "retrain it with benchmarks/semantic_train.py")
        self.vector_embedder: str | None = vector_model.get("embedder")
        self.vector_dim = int(vector_model.get("dim", 0))
        self.vector_models = {s: FoldEnsemble([FittedModel.of(f) for f in d["folds"]])
                              for s, d in vector_model.get("by_script", {}).items()}
        self.vector_thresholds = {
            kind: calibrated_threshold(data, max_false_rate)
            for kind, data in vector_model.get("calibration", {}).items()}

    def reads_vectors_of(self, embedder: str) -> bool:
        """Whether pairs embedded by `embedder` can go to the vector model."""
        return bool(self.vector_thresholds) and embedder == self.vector_embedder

    def _vector_kind(self, query: str, cached: str,
                     vectors: tuple[np.ndarray, np.ndarray] | None) -> str | None:
        """The pair's kind when the vector model decides it, else None."""
        if vectors is None or vectors[0] is None or vectors[1] is None:
            return None
        if len(vectors[0]) != self.vector_dim or len(vectors[1]) != self.vector_dim:
            return None
        kind = self.pair_kind(query, cached)
        return kind if kind in self.vector_thresholds else None

    @staticmethod
    def pair_script(query: str, cached: str) -> str:
        """The script a pair is judged in: both texts' if they agree, else latin's."""
        a, b = analyze(query).script, analyze(cached).script
        return a if a == b else "latin"

    @staticmethod
    def pair_kind(query: str, cached: str) -> str:
        """The calibration a pair is held to: its script's, except that English-like
        statements and instructions ("The `map()` function applies…") have their own
        (`latin_statement`): one-word differences there are often identifiers
        (`set_verbosity` / `get_verbosity`) and need more than a question does; and
        Chinese ones (`zh_statement`), where PAWS-X-like sentences that swap two names
        keep every word and would otherwise set the threshold for short questions."""
        script = LearnedVerifier.pair_script(query, cached)
        asks = _ASKS.get(script)
        if asks is not None and not (asks(query) and asks(cached)):
            return STATEMENT_KINDS[script]
        return script

    def threshold_of(self, query: str, cached: str,
                     vectors: tuple[np.ndarray, np.ndarray] | None = None) -> float:
        """The model score this pair must reach."""
        kind = self._vector_kind(query, cached, vectors)
        if kind is not None:
            return self.vector_thresholds[kind]
        return self.thresholds[self.pair_kind(query, cached)]

    def score(self, query: str, cached: str, cosine: float,
              vectors: tuple[np.ndarray, np.ndarray] | None = None) -> float:
        """P(same meaning) as the pair's model estimates it, before calibration.
        `vectors`: the query's and the cached text's embeddings, if known."""
        script = self.pair_script(query, cached)
        base = features(query, cached, cosine)
        if self._vector_kind(query, cached, vectors) is not None:
            assert vectors is not None
            return self.vector_models[script].score(vector_features(base, vectors))
        model = self.kind_models.get(self.pair_kind(query, cached), self.models[script])
        return model.score(base)

    def settle(self, query: str, cached: str, cosine: float,
               vectors: tuple[np.ndarray, np.ndarray] | None = None) -> Verdict | None:
        """The verdict when no model is needed (the floor, the guards, the always-hit
        rules); None: ask the model (`decide`)."""
        return self.rules(query, cached, cosine,
                          self._vector_kind(query, cached, vectors) is not None)

    def rules(self, query: str, cached: str, cosine: float,
              reads_vectors: bool) -> Verdict | None:
        """`settle` for a pair the vector model decides (`reads_vectors`) or not."""
        if cosine < self.min_similarity:
            return Verdict(False, "similarity")
        qa, qb = analyze(query), analyze(cached)
        wa, wb = _significant(query), _significant(cached)
        if ("usa" in wa) != ("usa" in wb):  # "in the US" / "in the us": one country
            wa, wb = (tuple("usa" if w == "us" else w for w in ws) for ws in (wa, wb))
        if wa == wb:  # case, punctuation, 请问 / 吗 / 呢, "please": nothing that matters
            return Verdict(True, "ok", 1.0)
        # Never worth a model's guess (unless the model was fitted on them: `guards_off`):
        # these change who or what is asked about.
        guards = self.guards[self.pair_script(query, cached)]
        if "numbers" in guards and _numbers_differ(qa, qb):
            return Verdict(False, "numbers")
        dash = self.pair_kind(query, cached) in SCRIPTS  # questions; in docs a list's bullet
        if "symbols" in guards and _symbols(query, dash) != _symbols(cached, dash):
            return Verdict(False, "symbols")  # C++ / C#, 2+2 / 2*2
        if "negation" in guards and qa.negated != qb.negated:
            return Verdict(False, "negation")
        person = _person_change(wa, wb, qa.script, by_person=reads_vectors)
        if person is not None and person in guards:
            return Verdict(False, person)  # "Should I ..." / "Will you ...", 你的, 我的
        if _acronym_expansion(query, cached, cosine):
            return Verdict(True, "ok", 1.0)  # AI <-> 人工智能, all else equal
        return None

    def decide(self, query: str, cached: str, cosine: float,
               vectors: tuple[np.ndarray, np.ndarray] | None = None) -> Verdict:
        """The model's verdict at the calibrated threshold of the pair's scripts."""
        score = self.score(query, cached, cosine, vectors)
        if score >= self.threshold_of(query, cached, vectors):
            return Verdict(True, "ok", score)
        return Verdict(False, "model", score)

    def verify(self, query: str, cached: str, cosine: float,
               vectors: tuple[np.ndarray, np.ndarray] | None = None) -> Verdict:
        settled = self.settle(query, cached, cosine, vectors)
        return settled if settled is not None else self.decide(query, cached, cosine, vectors)


_QUESTION_OPENERS = frozenset((
    "what", "how", "why", "when", "where", "who", "whom", "whose", "which", "is", "are", "am",
    "was", "were", "can", "could", "should", "would", "will", "do", "does", "did", "may",
    "might", "must", "has", "have", "had", "shall", "any", "anyone"))

# How users type a question without a question mark or a question's first word: a
# question after a clause ("my dog begs every time we eat, how do I stop it", "RAW or
# JPEG, which format should I use"), a search-box request ("best month to prune roses",
# "meaning of upstage", "cubism explained", "AF-S vs AF-C whats the difference"). Before,
# these were statements, held to the documentation sentences' threshold, which almost
# nothing passes: a third of a new batch's English paraphrases. Relative clauses of
# documentation (", where `path` is", ", which allows", "how-to guides") do not match.
_SUBJECT = r"(?:i|you|we|it|they|he|she|my|this|that|there|these|those)"
_CLAUSE_QUESTION = re.compile(
    r"(?:[,;:(]|\.\.+|\s[-\u2013\u2014]+)\s*(?:so\s+|but\s+)?(?:whats?|hows|whys?|whos?"
    r"|how (?:do|does|did|can|could|should|would|to|much|many|long|often|far|come|are|is|fast"
    r"|soon|big|old|bad|hard|easy)|which (?:\w+\s+){1,2}(?:should|do|does|is|are|would)"
    rf"|(?:can|could|should|do|does|did|is|are|will|would|am)\s+{_SUBJECT})\b(?!-)",
    re.IGNORECASE)
_SEARCH_QUESTION = re.compile(
    r"^(?:explain|tell me|help|recommend|suggest|need help|looking for|whats|hows|wheres|whos"
    r"|tips|best|how to|ways? to|steps to|(?:meaning|origin|definition|number|difference|cost"
    r"|price) of)\b|\b(?:or not|please|pls|plz|explained|how|why|whats the difference)\W*$"
    r"|\bvs\.?\s", re.IGNORECASE)


def is_question(text: str) -> bool:
    """Asks something: a question mark anywhere, a question's first word ("how to fix
    wifi"), a question after a clause or a search-box request (`_CLAUSE_QUESTION`,
    `_SEARCH_QUESTION`)."""
    if "?" in text or "\uff1f" in text:
        return True
    first = words(text)[:1]
    if first and first[0] in _QUESTION_OPENERS:
        return True
    plain = text.replace("'", "").replace("\u2019", "")
    return bool(_CLAUSE_QUESTION.search(plain) or _SEARCH_QUESTION.search(plain))


# A Chinese question or request: a question mark, particle or word (什么, 怎么, 吗, 哪,
# 多少, 是否...), an A-not-A question (难不难, 有没有), or what a search query asks for
# (方法, 区别, 推荐...). 97% of the project's Chinese question texts, under 1% of PAWS-X's.
_ZH_QUESTION = re.compile(
    "[?\uff1f]\\s*$|什么|怎么|怎样|如何|为什么|为何|为啥|[吗呢]|哪|几(?!乎)|多少|多久|多长|多大"
    "|多高|多重|多远|谁|是否|能否|可否|咋|啥|(.)[不没]\\1|请问|推荐|帮我|方法|做法|攻略"
    "|教程|技巧|区别|意思|原因")


def is_zh_question(text: str) -> bool:
    """A Chinese text that asks something, as opposed to a statement."""
    return _ZH_QUESTION.search(text) is not None


# What tells a question from a statement, per script with a statement kind.
_ASKS = {"latin": is_question, "zh": is_zh_question}


# Pronouns that name who is asked about ("it" / "they" often swap in a rewording).
_PERSON_WORDS = """
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself 我 你 您 他 她 我们 你们 他们 她们 咱们 我的 你的 他的 她的
私 僕 俺 あなた 君 彼 彼女 私たち
"""
PERSONS = PRONOUNS & frozenset(_PERSON_WORDS.split())
_PERSON_CLASS = {w: person for person, words in {
    "1s": "i me my mine myself", "1p": "we us our ours ourselves",
    "2": "you your yours yourself yourselves", "3m": "he him his himself",
    "3f": "she her hers herself"}.items() for w in words.split()}

# Words that never change what is asked: politeness and sentence-final particles.
_FILLERS = frozenset(["请问", "请", "吗", "呢", "吧", "啊", "呀", "please", "kindly"])


# Punctuation that never changes a question; other symbols (+ - # / %) do: 2+2 / 2-2.
_PUNCTUATION = frozenset(".,;:!?'\"()[]`\u3002\uff0c\uff1f\uff01\u3001\uff1a\uff1b"
                         "\u201c\u201d\u2018\u2019\u300c\u300d")


# In a question, a dash between words with spaces around it, and any en or em dash, is
# punctuation ("fishing line - how do you do it?"); "2 - 2" and "e-mail" keep theirs.
_DASH = re.compile(r"(?<=[^\d\s])\s+-+\s+(?=[^\d\s])|[\u2013\u2014]")


# A hyphen inside a word ("lab-grown", "AF-S", "not-at-fault") is spelling, not a symbol:
# as one, it vetoed 92 English paraphrases ("not at fault", "AF S") against 60 other
# questions, which differ by the hyphenated word anyway. Between digits it stays: 2-2.
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")


def _symbols(text: str, dash_is_punctuation: bool = False) -> tuple[str, ...]:
    text = _WORD_HYPHEN.sub(" ", text)
    if dash_is_punctuation:
        text = _DASH.sub(" ", text)
    return tuple(sorted(c for c in text
                        if not c.isalnum() and not c.isspace() and c not in _PUNCTUATION))


def _numbers_differ(a: Analysis, b: Analysis) -> bool:
    """Different numbers. Where both texts name one, spelled-out numbers count as digits
    ("3 months" / "three months", 两千 / 2000 agree, "two minute rule" / "five minute rule"
    differ); where only one does, "two cats" is a way of speaking, not a number asked
    about. In Chinese a number is named once however often it is repeated (三国是哪三个
    国家 / 三国时期有哪几个国家), and 1 is left out: a lone 一 is rarely a number (一个,
    一下) and is not read as one, so 1 could only ever be on one side (一年 / 1年)."""
    if a.script == "zh" and b.script == "zh":
        na, nb = ({n for n in x.numbers + x.spelled_numbers if n != "1"} for x in (a, b))
        if na == nb:
            return False
        if na and nb:
            return True
        return {n for n in a.numbers if n != "1"} != {n for n in b.numbers if n != "1"}
    na = tuple(sorted(a.numbers + a.spelled_numbers))
    nb = tuple(sorted(b.numbers + b.spelled_numbers))
    if na and nb:
        return na != nb
    return a.numbers != b.numbers


# Chinese question words and negators with the same meaning, each mapped to one form:
# "如何煮米饭" asks exactly what "怎么煮米饭" asks. Only true synonyms: 怎么 (how) and
# 怎么样 (how is it) differ, and so do 为什么 (why) and 怎么 (how).
_ZH_SYNONYMS = {"如何": "怎么", "怎样": "怎么", "咋": "怎么", "为啥": "为什么",
                "为何": "为什么", "啥": "什么", "哪儿": "哪里", "没": "没有"}


# English question openings that ask the same thing: "How can I ..." is "How do I ..."
# and "How to ...". Not "Can I ..." / "Do I ...", nor "How do you ..." (personal).
_EN_OPENINGS = {("how", "can", "i"): ("how", "do", "i"), ("how", "could", "i"): ("how", "do", "i"),
                ("how", "should", "i"): ("how", "do", "i"), ("how", "to"): ("how", "do", "i"),
                ("whats",): ("what", "is"), ("hows",): ("how", "is")}


def _openings(kept: list[str]) -> list[str]:
    for phrase, same in _EN_OPENINGS.items():
        if tuple(kept[:len(phrase)]) == phrase:
            return [*same, *kept[len(phrase):]]
    return kept


_US = re.compile(r"\bU\.?S\.?\b")


def _significant(text: str) -> tuple[str, ...]:
    """The words that decide what is asked, in order, and every number and symbol: the
    Chinese word split drops decimals ("0.25"), which must still tell texts apart."""
    analysis = analyze(text)
    kept = [w for w in words(text) if w not in _FILLERS]
    if analysis.script == "zh":
        kept = [_ZH_SYNONYMS.get(w, w) for w in kept]
    elif analysis.script == "latin":
        kept = _openings(kept)
        if _US.search(text):  # the country, not the pronoun
            kept = ["usa" if w == "us" else w for w in kept]
    return (*kept, *_symbols(text), *analysis.numbers)


# "you" spoken to the one answering ("Will you marry...", "Why do you believe...", "your
# opinion"); any other "you" is generic ("How do you parallel park?", "Can you take photos
# in museums?", "your credit report") and asks what "I" would: as a change of person it
# vetoed 82 of the English train file's paraphrases against 22 other questions.
_ADDRESSEE = re.compile(r"\b(?:will|would|have|are|were|did) you\b|\bwhy do you\b|\bdo you "
                        r"(?:think|believe|like|love|want|prefer|know|feel|remember)\b"
                        r"|\byou guys\b|\byour (?:opinion|favou?rite|view|thoughts)\b")


def _grammatical_persons(ws: tuple[str, ...]) -> set[str]:
    """The persons an English question is about, a generic "you" counted as "I"."""
    generic_you = not _ADDRESSEE.search(" ".join(ws))
    persons = {_PERSON_CLASS[w] for w in ws if w in _PERSON_CLASS}
    if generic_you and "2" in persons:
        persons = (persons - {"2"}) | {"1s"}
    return persons


# First-person singular words: a Chinese or Japanese question that adds or drops only
# these still asks about the speaker ("self" guard).
_SELF_WORDS = frozenset(["我", "我的", "私", "僕", "俺"])


def _person_change(a: tuple[str, ...], b: tuple[str, ...], script: str,
                   by_person: bool = False) -> str | None:
    """Whether who is asked about changed, and how: "pronoun" when both sides name a
    person and not the same one ("Should I" / "Will you"), or, in Chinese and Japanese,
    when a pronoun or possessive other than the speaker's is on one side only (座右铭 /
    你的座右铭); "self" when only the speaker's is (我的电脑 / 电脑); None: unchanged.
    English rewordings often add or drop a generic "you" ("lets you load" / "loads"):
    left to the model.

    `by_person` (English, for the vector model): compare grammatical persons, not
    words: "Should I get my dog neutered?" / "Is it a good idea to neuter my dog?" both
    ask about the speaker. The bag-of-words models keep the word rule: "after I cheated
    on my partner" / "after they cheated on me" has the same words, and out of fold the
    person rule took their recall at 2% from about 10% to 1-2%."""
    if script == "latin" and by_person:
        ca, cb = _grammatical_persons(a), _grammatical_persons(b)
        return "pronoun" if ca and cb and ca != cb else None
    pa = Counter(w for w in a if w in PERSONS)
    pb = Counter(w for w in b if w in PERSONS)
    if pa == pb:
        return None
    if pa and pb:
        return "pronoun"
    if script == "latin":
        return None
    return "self" if set(pa + pb) <= _SELF_WORDS else "pronoun"


def _acronym_expansion(query: str, cached: str, cosine: float) -> bool:
    """The old verifier's one narrow accept rule: the texts differ only by an acronym on
    one side and its spelled-out (or translated) form on the other."""
    verdict = verify(query, cached, cosine, _EXPANSION_ONLY)
    return verdict.accept and (Counter(analyze(query).tokens)
                               != Counter(analyze(cached).tokens))


_EXPANSION_ONLY = VerifierSettings(min_similarity=0.93, rewording_scripts=frozenset())


@lru_cache(maxsize=8)
def load_verifier(max_false_rate: float = 0.02, path: str | None = None) -> LearnedVerifier:
    data = json.loads(Path(path or MODEL_PATH).read_text(encoding="utf-8"))
    return LearnedVerifier(data, max_false_rate)
