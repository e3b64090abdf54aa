"""Language-aware text analysis for the semantic verifier.

We only need three things from a sentence: its content tokens in order (function words
dropped, light stemming), its numbers, and whether it is negated. English-like text
splits on word boundaries; Chinese uses jieba when installed (else single characters);
Japanese splits into script runs (kanji, katakana, hiragana, latin) and drops lone
particles.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# English number words, read as digits only where both texts name a number ("3 months" /
# "three months"); "one" is left out ("which one"), and so is "zero" ("zero experience").
_NUMBER_WORDS = {
    **{w: str(i) for i, w in enumerate(
        "two three four five six seven eight nine ten eleven twelve".split(), start=2)},
    **{w: str(10 * i) for i, w in enumerate(
        "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)},
    **{w: str(10 * i) for i, w in enumerate(
        "twenties thirties forties fifties sixties seventies eighties nineties".split(),
        start=2)},
    "hundred": "100", "thousand": "1000", "dozen": "12"}
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
# Chinese numerals, read as digits only where both texts name a number (两千 / 2000, 第三页 /
# 第3页, 双十一 / 双11). A lone 一 is left out (一个, 一下), and so are words whose numerals
# are not numbers (十分 "very", 千万 "by all means", 万一 "in case", 三星, 百度).
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")
_ZH_NOT_NUMBER = re.compile(r"十分(?!钟)|千万(?![元块人])|(?<![一二两三四五六七八九十])万一|一一"
                            r"|三星|百度|九寨沟")
_ZH_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_ZH_UNIT = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10_000, "亿": 100_000_000}


def zh_number(run: str) -> int | None:
    """The value of a run of Chinese numerals (十一 11, 两千 2000, 三千五 3500, 一亿两千万
    120,000,000); None if it does not read as one number (一二三)."""
    result, section, digit, last_unit, zero = 0, 0, None, 1, False
    for char in run:
        if char in _ZH_DIGIT:
            if digit is not None and _ZH_DIGIT[char] != 0 and digit != 0:
                return None  # 一二: two numbers, not one
            zero = zero or _ZH_DIGIT[char] == 0
            digit = _ZH_DIGIT[char]
        elif char in _ZH_UNIT:
            section += (1 if digit is None else digit) * _ZH_UNIT[char]
            digit, last_unit, zero = None, _ZH_UNIT[char], False
        else:
            result += (section + (digit or 0) or 1) * _ZH_BIG[char]
            section, digit, last_unit, zero = 0, None, _ZH_BIG[char], False
    if digit is not None and last_unit >= 100 and not zero:
        digit *= last_unit // 10  # 三千五: 3,500 (一百零五: 105)
    return result + section + (digit or 0)


_ZH_SCALE = {"千": 1000, "万": 10_000, "亿": 100_000_000}
_ZH_SCALED = re.compile(r"(\d+(?:\.\d+)?)\s*([千万亿])")


# A measure word after a number: the numeral before it counts things (一万一个月: 10,000
# for one month, not 11,000).
_ZH_MEASURE = frozenset("个次年月天周岁件只条张本块元分份位家台辆套种斤米")


def _zh_numbers(text: str) -> tuple[str, ...]:
    values = []
    text = _ZH_NOT_NUMBER.sub(" ", text)
    for match in _ZH_NUMERAL.finditer(text):
        run = match.group()
        after = text[match.end():match.end() + 1]
        if len(run) > 1 and run[-1] in _ZH_DIGIT and run[-2] in "百千万亿" and after in _ZH_MEASURE:
            run = run[:-1]  # 一万一个月
        if run == "一":
            continue
        value = zh_number(run)
        if value is not None:
            values.append(str(value))
    return tuple(sorted(values))


_JA_RUNS = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf々〆]+|[\u30a0-\u30ffー]+|[a-z0-9]+|[\u3040-\u309f]+")

EN_STOPWORDS = frozenset("""
a an the is are was were be been being am do does did doing done have has had having
i me my mine we us our you your yours he him his she her it its they them their this that
these those there here of in on at to for from by with about into onto over under as
and or but so if then than too very just also please kindly can could would should will
shall may might must let lets s t d ll re ve m get got some any one ones thing things
really actually exactly simply basically tell explain describe give show know want like
need help way ways
""".split())

EN_NEGATIONS = frozenset("not no never none nobody nothing neither nor without cannot cant "
                         "dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt "
                         "couldnt hasnt havent hadnt n't".split())

ZH_STOPWORDS = frozenset("的 了 是 吗 呢 吧 啊 呀 嘛 么 请问 请 一下 我 你 他 她 它 我们 你们 "
                         "他们 这 那 这个 那个 有 在 和 与 及 或 就 都 也 还 又 很 太 会 能 "
                         "可以 要 想 把 被 给 让 对 从 到 为 以 之 其 个 些 一个 一些 告诉 说说 "
                         "讲讲 介绍 解释 ？ ！ ， 。".split())
ZH_NEGATIONS = ("不", "没", "無", "无", "非", "别", "未", "莫", "勿", "否")
# Where 不 / 没 do not deny what is asked: a yes-or-no question (能不能, 值不值得, 有没有,
# 要不要; a final 不 / 没 / 否: 能退号不), and words whose 不 is part of the word (不见 "gone
# missing", 不停 "keeps on", 不错 "good"). Counted as negation, they vetoed half the
# Chinese paraphrases the negation rule stopped ("可以帮老人挂号吗" / "能不能替我爸妈挂号").
_ZH_NOT_NEGATION = re.compile(
    r"(\w)[不没]\1|(\w\w)[不没]\2|[不没否](?=[\s?？。！!吗呢啊呀]*$)"
    r"|不见|不停|不断|不错|不少|不过|不管|不然|差不多|要不然|不得不|不一定|对不起|了不起"
    r"|来不及|忍不住|不仅|不但|并不|毫无|无论|非常|是非|无线|无人机")
JA_NEGATIONS = ("ない", "ません", "ず", "なかった", "無い", "無し", "ぬ", "じゃない", "ではない")
JA_PARTICLES = frozenset("は が を に で と も の へ や か ね よ な から まで より".split())
# Japanese katakana/kanji runs that carry no content of their own.
JA_STOPWORDS = frozenset("事 物 方 何 誰 ください".split())


@dataclass(frozen=True, slots=True)
class Analysis:
    normalized: str
    tokens: tuple[str, ...]  # content tokens, in order
    numbers: tuple[str, ...]  # sorted
    negated: bool
    entities: frozenset[str]  # content tokens that look like names (capitalised, acronyms)
    script: str  # "latin" | "zh" | "ja"
    spelled_numbers: tuple[str, ...] = ()  # number words (English, Chinese) as digits, sorted


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_QUOTES).strip()


def _stem(word: str) -> str:
    if len(word) <= 3 or not word.isascii():
        return word
    for suffix in ("'s", "ies", "sses", "ing", "ed", "est", "er", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: len(word) - len(suffix)]
            return base + ("y" if suffix == "ies" else "ss" if suffix == "sses" else "")
    return word


@lru_cache(maxsize=1)
def _jieba():  # pragma: no cover - depends on an optional package
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(60)
    return jieba


def _latin_entities(text: str) -> set[str]:
    """Capitalised words not at a sentence start, and acronyms (e.g. AWS, GPT-4)."""
    out = set()
    for match in re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w-]*)", text):
        out.add(match.group(1).lower())
    for match in re.finditer(r"\b([A-Z]{2,}[\w-]*)", text):
        out.add(match.group(1).lower())
    return out


def is_acronym(token: str, original: str) -> bool:
    return bool(re.search(rf"\b{re.escape(token.upper())}\b", original))


@lru_cache(maxsize=4096)
def analyze(text: str) -> Analysis:
    norm = _normalize(text)
    lower = norm.lower()
    numbers = tuple(sorted(n.replace(",", "") for n in _NUMBER.findall(lower)))
    entities = _latin_entities(norm)
    spelled: tuple[str, ...] = ()
    if _KANA.search(lower):
        # Hiragana runs carry inflection and aspect (止まっています "has stopped" vs
        # 止まろうとしています "is about to stop"), so only lone particles are dropped.
        tokens = [run for run in _JA_RUNS.findall(lower)
                  if run not in JA_PARTICLES and run not in JA_STOPWORDS]
        negated = any(marker in lower for marker in JA_NEGATIONS)
        script = "ja"
    elif _HAN.search(lower):
        jieba = _jieba()
        words = jieba.lcut(lower) if jieba else list(lower)
        tokens = [w.strip() for w in words
                  if w.strip() and w.strip() not in ZH_STOPWORDS and _WORD.fullmatch(w.strip())]
        negated = any(marker in _ZH_NOT_NEGATION.sub("", lower) for marker in ZH_NEGATIONS)
        script = "zh"
        # 5万 / 1.5千: one number (50,000), not 5 beside 万
        scaled = _ZH_SCALED.sub(lambda m: f"{float(m[1]) * _ZH_SCALE[m[2]]:g}", lower)
        numbers = tuple(sorted(n.replace(",", "") for n in _NUMBER.findall(scaled)))
        spelled = _zh_numbers(_ZH_SCALED.sub(" ", lower))
    else:
        words = [w.replace("'", "") if w.endswith("n't") else w for w in _WORD.findall(lower)]
        negated = any(w in EN_NEGATIONS for w in words) or "n't" in lower
        tokens = [_stem(w) for w in words if w not in EN_STOPWORDS and not w.isdigit()]
        entities = {_stem(e) for e in entities}
        script = "latin"
        spelled = tuple(sorted(_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS))
    return Analysis(norm, tuple(tokens), numbers, negated, frozenset(entities), script,
                    spelled)


# What the embedder reads of a text. Typing style is not meaning: "How do I X?" and
# "how do i x" ask the same, but e5 (case-sensitive) put them further apart than many
# different questions, and the writers of the training pairs typed most paraphrases
# casually and most seeds formally, so a model over the vectors learned the style. Both
# sides folded the same way, the vectors carry what is asked (English training pairs,
# cosine alone: AUC 0.588 as written, 0.674 folded).
_TRAILING = re.compile(r"[\s?.!\uff1f\u3002\uff01]+$")


def without_final_punctuation(text: str) -> str:
    """`text` without its final question marks, full stops or exclamation marks."""
    return _TRAILING.sub("", text.strip())


def embedding_text(text: str) -> str:
    """`text` as the embedder reads it: lower case, no final question mark or full stop."""
    return without_final_punctuation(text).lower() or text
