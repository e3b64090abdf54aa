"""What the learned verifier sees of a (query, cached text) pair.

The old vetoes compared bags of *content* words, and the analysis dropped exactly the
words that tell two questions apart: pronouns and modals ("Should I" / "Will you"),
possessives (座右铭 / 你的座右铭), particles such as "over". Here every word counts:
the features describe what was added, dropped or swapped on each side, by kind
(pronoun, modal, question word, number, negation, name, other), beside the embedder's
cosine, character overlap, the old veto signals and how close in meaning the swapped
words are (static word vectors, `word_vectors.py`). `learned.py` weighs them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np

from hitrate.semantic import word_vectors
from hitrate.semantic.text import _jieba, analyze
from hitrate.semantic.verifier import VerifierSettings, order_agreement, verify

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_JA_RUNS = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf々〆]+|[\u30a0-\u30ffー]+|[a-z0-9]+|"
                      r"[\u3040-\u309f]+")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)



def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


PRONOUNS = _vocabulary("""
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves one someone
somebody anyone anybody everyone
我 你 您 他 她 它 我们 你们 他们 她们 咱们 自己 我的 你的 他的 她的 人家 别人 大家
私 僕 俺 あなた 君 彼 彼女 自分 我々 私たち
""")
MODALS = _vocabulary("""
can could should would will shall may might must ought need needs needed do does did
能 会 可以 应该 应当 要 该 得 必须 需要 可能 想 愿意 肯
""")
QUESTION_WORDS = _vocabulary("""
what how why when where who whom whose which whether
什么 怎么 怎样 怎么样 为什么 为何 哪 哪里 哪个 哪些 谁 多少 几 如何 是否 吗 呢
何 どう なぜ 何故 いつ どこ 誰 どれ どの いくら
""")
NEGATIONS = _vocabulary("""
not no never none nobody nothing neither nor without cannot cant dont doesnt didnt isnt
arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt
不 没 没有 无 非 别 未 莫 勿 否 不是 不能 不会 ない ません ず
""")

# What a question asks for, by its question words: "瓷砖空鼓是什么原因" asks the cause,
# "瓷砖空鼓怎么办" what to do; "能改期数吗" yes or no, "可以分几期" how many. Two
# questions with an intent each and none in common rarely want the same answer. (A
# "compare" intent and "what's" as "meaning" lowered recall at 2% out of fold: left out.)
_INTENTS = {name: re.compile(pattern) for name, pattern in {
    "cause": r"为什么|为何|为啥|原因|怎么回事|咋回事|\bwhy\b|\bcauses?\b|\breasons?\b",
    "method": r"怎么办|咋办|怎么(?![样回])|如何|怎样|方法|做法|解决|教程|\bhow (?:do|can|to|should"
              r"|would|could|does)\b|\bways? to\b|\bsteps\b",
    "time": r"多久|多长时间|什么时候|何时|几点|几天|\bhow long\b|\bwhen\b|\bwhat time\b",
    "quantity": r"多少|几(?![乎点天])|多大|多高|多重|多远|多贵|\bhow (?:much|many|big|tall|far"
                r"|old|often)\b",
    "place": r"哪里|哪儿|在哪|什么地方|\bwhere\b",
    "person": r"谁|\bwho(?:m|se)?\b",
    "choice": r"哪个|哪些|哪款|哪种|哪家|还是|推荐|\bwhich\b|\bbetter\b|\bbest\b|\bvs\b",
    "yes_no": r"吗|能不能|可不可以|是不是|有没有|会不会|是否|能否|(.)不\1|^(?:is|are|am|was|were|can"
              r"|could|should|would|will|do|does|did|may|might|must|has|have|had|shall)\b",
    "meaning": r"是什么|什么是|什么意思|\bwhat (?:is|are|does)\b|\bmeaning\b|\bdefinition\b",
}.items()}


@lru_cache(maxsize=8192)
def intents(text: str) -> frozenset[str]:
    """What a question asks for (`_INTENTS`), by its question words; empty if none."""
    folded = _fold(text)
    return frozenset(name for name, pattern in _INTENTS.items() if pattern.search(folded))


VETO_REASONS = ("ok", "numbers", "negation", "reorder", "extra_content", "entity_swap",
                "slot_swap", "rewording_script", "rewording")
SCRIPTS = ("latin", "zh", "ja")
DIFF_KNEE, DIFF_KNEE_SLOPE = 0.85, 10.0  # diff_cos_hi: how far above 0.85, scaled
_VETO_SETTINGS = VerifierSettings(min_similarity=0.0)

NAMES = (
    "bias", "cos", "cos_hi", "cos_top", "char_dice", "char_dice_hi", "word_jaccard",
    "content_jaccard", "only_words", "only_words_frac", "only_content", "only_content_frac",
    "pronoun_diff", "modal_diff", "question_diff", "negation_diff", "number_diff",
    "name_diff", "other_diff", "one_sided", "order", "len_ratio", "identical_norm",
    *(f"veto_{r}" for r in VETO_REASONS),
    *(f"script_{s}" for s in SCRIPTS),
    *(f"cos_x_{s}" for s in SCRIPTS),
    *(f"dice_x_{s}" for s in SCRIPTS),
    "diff_cos", "diff_cos_hi", "diff_both", "intent_shared", "intent_clash",
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").strip()


@lru_cache(maxsize=8192)
def words(text: str) -> tuple[str, ...]:
    """Every word, in order, nothing dropped (English 'n't' folded into the verb)."""
    folded = _fold(text)
    script = analyze(text).script
    if script == "ja":
        return tuple(_JA_RUNS.findall(folded))
    if script == "zh":
        jieba = _jieba()
        pieces = jieba.lcut(folded) if jieba else list(folded)
        return tuple(p.strip() for p in pieces if p.strip() and _WORD.fullmatch(p.strip()))
    return tuple(w.replace("n't", "nt").replace("'", "") for w in _WORD.findall(folded))


def _chars(text: str) -> Counter[str]:
    s = _PUNCT.sub("", _fold(text))
    return Counter(s[i:i + 2] for i in range(max(1, len(s) - 1)))


def _dice(a: Counter[str], b: Counter[str]) -> float:
    total = sum(a.values()) + sum(b.values())
    return 2 * sum((a & b).values()) / total if total else 1.0


def _kind_diff(only: Counter[str], vocabulary: frozenset[str]) -> int:
    return sum(n for w, n in only.items() if w in vocabulary)


def differing_words(query: str, cached: str) -> tuple[str, str] | None:
    """The words only one side has, each side's in its own order ("newborn" / "toddler"),
    when both sides have some: their word vectors say whether a swap keeps the meaning
    (kid / child) or changes what is asked (newborn / toddler, car loan / mortgage)."""
    wa, wb = words(query), words(cached)
    ca, cb = Counter(wa), Counter(wb)
    only_a, only_b = ca - cb, cb - ca
    if not only_a or not only_b:
        return None
    joiner = " " if analyze(query).script == "latin" else ""

    def kept(ws: tuple[str, ...], only: Counter[str]) -> str:
        left = Counter(only)
        out = []
        for w in ws:
            if left[w] > 0:
                left[w] -= 1
                out.append(w)
        return joiner.join(out)

    return kept(wa, only_a), kept(wb, only_b)


@lru_cache(maxsize=1024)
def features(query: str, cached: str, cosine: float) -> np.ndarray:
    """The pair's feature vector (read-only: shared by every caller of the cache). The
    differing words' cosine comes from static word vectors (`word_vectors`), so no
    embedder call is needed."""
    qa, qb = analyze(query), analyze(cached)
    wa, wb = Counter(words(query)), Counter(words(cached))
    only = (wa - wb) + (wb - wa)
    one_sided = float(not (wa - wb) or not (wb - wa)) if only else 0.0
    ca, cb = Counter(qa.tokens), Counter(qb.tokens)
    only_content = (ca - cb) + (cb - ca)
    n_words = max(1, sum(wa.values()) + sum(wb.values()))
    n_content = max(1, sum(ca.values()) + sum(cb.values()))
    names = (set(ca - cb) & qa.entities) | (set(cb - ca) & qb.entities)
    dice = _dice(_chars(query), _chars(cached))
    la, lb = len(qa.normalized), len(qb.normalized)
    veto = verify(query, cached, cosine, _VETO_SETTINGS).reason
    kinds = (PRONOUNS, MODALS, QUESTION_WORDS, NEGATIONS)
    other = sum(n for w, n in only.items()
                if not any(w in k for k in kinds) and not w.isdigit())
    script = qa.script if qa.script == qb.script else "latin"
    diff = differing_words(query, cached)
    diff_cos = word_vectors.cosine(*diff) if diff is not None else 0.0
    s_onehot = [float(script == s) for s in SCRIPTS]
    ia, ib = intents(query), intents(cached)
    values = [
        1.0, cosine, max(0.0, cosine - 0.9) * 10, max(0.0, cosine - 0.96) * 25,
        dice, max(0.0, dice - 0.8) * 5,
        sum((wa & wb).values()) / max(1, sum((wa | wb).values())),
        sum((ca & cb).values()) / max(1, sum((ca | cb).values())),
        min(sum(only.values()), 12) / 12, sum(only.values()) / n_words,
        min(sum(only_content.values()), 12) / 12, sum(only_content.values()) / n_content,
        min(_kind_diff(only, PRONOUNS), 3), min(_kind_diff(only, MODALS), 3),
        min(_kind_diff(only, QUESTION_WORDS), 3),
        float(qa.negated != qb.negated or _kind_diff(only, NEGATIONS) > 0),
        float(qa.numbers != qb.numbers), min(len(names), 3), min(other, 12) / 12,
        one_sided, order_agreement(qa.tokens, qb.tokens),
        min(la, lb) / max(1, la, lb), float(qa.normalized.lower() == qb.normalized.lower()),
        *(float(veto == r) for r in VETO_REASONS),
        *s_onehot,
        *(cosine * s for s in s_onehot),
        *(dice * s for s in s_onehot),
        diff_cos, max(0.0, diff_cos - DIFF_KNEE) * DIFF_KNEE_SLOPE, float(diff is not None),
        float(bool(ia & ib)), float(bool(ia and ib and not ia & ib)),
    ]
    x = np.asarray(values, dtype=np.float64)
    x.flags.writeable = False  # shared by every caller of the cache
    return x
