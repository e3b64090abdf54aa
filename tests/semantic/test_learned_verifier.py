"""The learned verifier with the default embedder: the wrong hits reported in issue 13
must miss, their paraphrases must hit, and the shipped model loads and calibrates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hitrate.config import SemanticConfig
from hitrate.semantic import word_vectors
from hitrate.semantic.embedders import e5
from hitrate.semantic.features import NAMES, differing_words, features
from hitrate.semantic.learned import (
    MODEL_PATH,
    calibrated_threshold,
    load_verifier,
    threshold_for,
    unseen_writer_outcome,
    unseen_writer_table,
    unseen_writer_threshold,
)
from hitrate.semantic.lookup import SemanticLayer, build_semantic

# (stored question, asked question): verbatim from issue 13, each served wrongly before.
WRONG_HITS = [
    ("How do I get over a girl I like?", "How can I get the girl I like?"),
    ("Should I marry a non-virgin girl?", "Will you marry a non-virgin girl?"),
    ("Why should I believe in God?", "Why do you believe in God?"),
    ("座右铭是什么？", "你的座右铭是什么？"),
    ("猪肉是什么意思", "她给她猪肉我？什么意思呢？"),
    # README's near miss
    ("What is the capital of France?", "What is the capital of Germany?"),
    # same words, different symbols
    ("What is 2+2?", "What is 2-2?"),
    ("Is C++ hard to learn?", "Is C# hard to learn?"),
    # decimals: the word split of Chinese text dropped "0.25", so these looked equal
    ("0.25等于几分之几", "0.5等于几分之几"),
    ("1.5公斤是几斤", "2.5公斤是几斤"),
]
# Paraphrases of the same questions: each must still be served from cache.
PARAPHRASES = [
    ("How can I get the girl I like?", "How do I get the girl I like?"),
    ("Should I marry a non-virgin girl?", "should i marry a non-virgin girl"),
    ("Why do you believe in God?", "Why do you believe in god"),
    ("你的座右铭是什么？", "请问你的座右铭是什么？"),
    ("猪肉是什么意思", "猪肉是什么意思？"),
    # README's seed paraphrase
    ("什么是人工智能？", "AI 是什么？"),
]


# Natural questions one word apart that ask something else: the model weighs the
# embedder's cosine of the differing words (puppy / kitten), not only the sentences'.
ONE_WORD_APART = [
    ("How do I get my puppy to stop biting?", "How do I get my kitten to stop biting?"),
    ("What's the best way to pay off student loans?",
     "What's the best way to pay off credit card debt?"),
    ("How much does a wedding photographer cost?", "How much does a wedding planner cost?"),
    ("Is coffee bad for your kidneys?", "Is coffee bad for your liver?"),
]
# English openings that ask the same thing, and one that does not (who is asked).
EN_SAME_OPENINGS = [
    ("How can I learn Rust?", "How to learn Rust?"),
    ("How do I learn Rust?", "How should I learn Rust?"),
    ("What is a Roth IRA?", "What's a Roth IRA?"),
]
EN_OTHER_PERSON = [("How do I learn Rust?", "How did you learn Rust?"),
                   ("Should I learn Rust?", "Would you learn Rust?")]

# Chinese question words that mean the same thing: a swap is the same question.
ZH_SYNONYM_SWAPS = [
    ("怎么学好英语？", "如何学好英语？"),
    ("为什么天空是蓝色的？", "为啥天空是蓝色的？"),
    ("北京哪里好玩？", "北京哪儿好玩？"),
]
# ...but not words that only look alike: how / why, how to / how is it.
ZH_NOT_SYNONYMS = [
    ("怎么学好英语？", "为什么学好英语？"),
    ("这个手机怎么用？", "这个手机怎么样？"),
]


@pytest.fixture(scope="module")
def layer() -> SemanticLayer:
    return build_semantic(SemanticConfig())


async def _served(layer: SemanticLayer, stored: str, asked: str, scope: str) -> bool:
    vector = await layer.vector(stored, scope)
    await layer.remember(f"key:{scope}", stored, vector, scope, "default", None)
    found = await layer.candidates(asked, scope, await layer.vector(asked, scope))
    return any(match.key == f"key:{scope}" for match, _ in found)


@pytest.mark.parametrize(("stored", "asked"), WRONG_HITS)
async def test_reported_wrong_hits_now_miss(layer, stored, asked):
    assert not await _served(layer, stored, asked, f"wrong:{stored}")
    assert not await _served(layer, asked, stored, f"wrong-reversed:{stored}")


@pytest.mark.parametrize(("stored", "asked"), PARAPHRASES)
async def test_their_paraphrases_hit(layer, stored, asked):
    assert await _served(layer, stored, asked, f"para:{stored}")


def test_shipped_model_matches_the_features_and_is_small():
    data = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    assert data["features"] == list(NAMES)
    assert data["word_vectors"] == word_vectors.NAME
    assert MODEL_PATH.stat().st_size < 3_000_000  # the vector model: 9 folds x 800 x 16 weights
    assert "all" in data["calibration"]  # pooled over the training languages
    assert "ja_jsts_dev.tsv" not in data["trained_on"]  # the held-out language


def test_a_tighter_budget_never_lowers_the_threshold():
    loose, strict = load_verifier(0.1), load_verifier(0.01)
    for script in ("latin", "zh", "ja"):
        assert strict.thresholds[script] >= loose.thresholds[script]
    # Japanese: the model never accepts (JSTS-style labels call most rewordings of a
    # scene different); only the rules hit
    assert loose.thresholds["ja"] == float("inf")


def test_threshold_for_respects_the_budget():
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.5, 0.4])
    false = np.array([0, 0, 0, 1, 1, 0])
    assert threshold_for(scores, false, 0.5) <= 0.97
    assert threshold_for(scores, false, 1e-6) == float("inf")  # nothing is that sure


def _writer_folds(tails: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four writers' calibration pairs: 200 positives scored 0.5-1 and 200 negatives,
    of which `tails[k]` score as high as positives (hard negatives the model has not
    learned) and the rest 0-0.6."""
    rng = np.random.default_rng(7)
    scores, false, folds = [], [], []
    for k, tail in enumerate(tails):
        scores += [*rng.uniform(0.5, 1.0, 200), *rng.uniform(0.0, 0.6, 200 - tail),
                   *rng.uniform(0.6, 1.0, tail)]
        false += [0] * 200 + [1] * 200
        folds += [k] * 400
    return np.array(scores), np.array(false), np.array(folds)


def test_the_threshold_is_one_that_kept_the_budget_on_writers_it_never_saw():
    alike = _writer_folds((2, 2, 2, 2))
    # writers alike: the threshold aimed at the budget on all the pairs, as before
    assert unseen_writer_threshold(*alike, 0.02).threshold == threshold_for(
        alike[0], alike[1], 0.02)
    scores, false, folds = _writer_folds((0, 0, 2, 8))
    accepted, wrong = unseen_writer_outcome(scores, false, folds, 0.02)
    assert wrong > 0.02 * accepted  # aimed at the budget, it fails a writer it never saw
    chosen = unseen_writer_threshold(scores, false, folds, 0.02)
    assert chosen.threshold > threshold_for(scores, false, 0.02)
    assert chosen.accepted > 0 and chosen.false <= 0.02 * chosen.accepted
    assert unseen_writer_outcome(scores, false, folds, chosen.aim, chosen.z) == (
        chosen.accepted, chosen.false)
    # the model file keeps a threshold per budget; a larger budget never gets a higher one
    data = {"logits": np.log(scores / (1 - scores)).tolist(), "false": false.tolist(),
            "folds": folds.tolist()}
    table = unseen_writer_table(data)
    assert [t for _, t in table] == sorted((t for _, t in table), reverse=True)
    data["unseen_writer_thresholds"] = table
    assert calibrated_threshold(data, 0.02) == pytest.approx(chosen.threshold)
    assert calibrated_threshold(data, 0.022) == calibrated_threshold(data, 0.02)  # grid below
    assert calibrated_threshold(data, 0.001) == float("inf")  # below the grid: never
    assert calibrated_threshold({"logits": data["logits"], "false": data["false"]},
                                0.02) == pytest.approx(threshold_for(scores, false, 0.02))


def test_features_see_the_words_the_old_analysis_dropped():
    names = list(NAMES)
    x = features("Should I marry a non-virgin girl?", "Will you marry a non-virgin girl?", 0.97)
    assert x[names.index("pronoun_diff")] >= 2
    assert x[names.index("modal_diff")] >= 2
    x = features("座右铭是什么？", "你的座右铭是什么？", 0.97)
    assert x[names.index("pronoun_diff")] >= 1
    assert x[names.index("one_sided")] == 1.0


@pytest.mark.parametrize(("stored", "asked"), ZH_SYNONYM_SWAPS + EN_SAME_OPENINGS)
async def test_question_words_that_ask_the_same_hit(layer, stored, asked):
    assert await _served(layer, stored, asked, f"syn:{stored}")
    assert await _served(layer, asked, stored, f"syn-reversed:{stored}")


@pytest.mark.parametrize(("stored", "asked"), ZH_NOT_SYNONYMS)
async def test_chinese_question_words_that_differ_miss(layer, stored, asked):
    assert not await _served(layer, stored, asked, f"zh-diff:{stored}")


@pytest.mark.parametrize(("stored", "asked"), ONE_WORD_APART)
async def test_one_word_apart_natural_questions_miss(layer, stored, asked):
    assert not await _served(layer, stored, asked, f"apart:{stored}")


async def test_a_cold_lookup_sends_only_the_question_to_the_embedder():
    # "what is the best way to" / "how do i": the model's verdict weighs how close the
    # differing words are, read from static word vectors, not from another embedder call
    layer = build_semantic(SemanticConfig())
    await layer.warm()  # as the gateway does at startup: loading the model takes ~2 s
    embedded: list[str] = []
    embed = layer.embedder.embed

    async def counting(texts):
        embedded.extend(texts)
        return await embed(texts)

    layer.embedder.embed = counting
    stored, asked = "How do I learn Rust?", "What is the best way to learn Rust?"
    await layer.remember("key:rust", stored, await layer.vector(stored, "rust"), "rust",
                         "default", None)
    embedded.clear()
    await layer.candidates(asked, "rust", await layer.vector(asked, "rust"))
    assert embedded == [asked]


def test_the_differing_words_closeness_is_a_feature():
    diff_cos = list(NAMES).index("diff_cos")
    same = features("How do I get my kid to eat vegetables?",
                    "How do I get my child to eat vegetables?", 0.97)
    other = features("How do I get my newborn to sleep?", "How do I get my toddler to sleep?",
                     0.97)
    assert same[diff_cos] > 0.7 > 0.4 > other[diff_cos]
    assert same[list(NAMES).index("diff_both")] == 1.0
    # one side only adds words: nothing to compare
    assert features("Why is the sky blue?", "Why is the sky blue at noon?",
                    0.97)[list(NAMES).index("diff_both")] == 0.0


@pytest.mark.parametrize(("stored", "asked"), EN_OTHER_PERSON)
async def test_an_opening_about_someone_else_misses(layer, stored, asked):
    assert not await _served(layer, stored, asked, f"person:{stored}")


def test_differing_words_are_each_sides_own_in_order():
    assert differing_words("How do I get my puppy to stop biting?",
                           "How do I get my kitten to stop biting?") == ("puppy", "kitten")
    assert differing_words("What is the capital of France?",
                           "Which city is the capital of France?") == ("what", "which city")
    # one side only adds words: nothing to compare
    assert differing_words("Why is the sky blue?", "Why is the sky blue at noon?") is None


def test_statements_have_their_own_model_and_calibration():
    from hitrate.semantic.learned import is_question

    assert is_question("how to fix wifi") and is_question("Is it safe?")
    assert not is_question("The `map()` function applies a transform to every row.")
    # how users type questions without a question mark or a question's first word
    for casual in ("my dog begs every time we eat, how do I stop it",
                   "RAW or JPEG, which file format should I set my camera to",
                   "css center a div?? nothing works", "best month to prune rose bushes",
                   "meaning of upstage and downstage in theatre", "cubism explained",
                   "AF-S vs AF-C whats the diffrence", "what's the best way to clean a washer"):
        assert is_question(casual), casual
    # documentation's relative clauses and headings are not questions
    for sentence in ("The `shape` method gives the size of the table, which is (#rows, #columns).",
                     "Iter_archive() yields (path, f), where path is a relative path.",
                     "The sections are Get started, Tutorials, How-to guides and Reference."):
        assert not is_question(sentence), sentence
    verifier = load_verifier()
    question = ("How do I learn Rust?", "What is the best way to learn Rust?")
    statement = ("Explain how `map()` works.", "Describe the `map()` function.")
    assert verifier.pair_kind(*question) == "latin"
    assert verifier.pair_kind(*statement) == "latin_statement"
    # identifiers make one-word differences costly: statements are scored by a model of
    # their own, at a threshold calibrated on statements only
    assert "latin_statement" in verifier.kind_models
    assert "latin_statement" in verifier.model["calibration"]
    features_of = features(*statement, 0.95)
    assert verifier.score(*statement, 0.95) == verifier.kind_models["latin_statement"].score(
        features_of)
    assert verifier.score(*statement, 0.95) != verifier.models["latin"].score(features_of)


def test_a_yes_or_no_form_is_not_a_chinese_negation():
    from hitrate.semantic.text import analyze

    for asked in ("小区里能不能装私人充电桩", "值不值得报保险", "有没有时间限制", "医保卡不见了",
                  "狗晚上叫个不停怎么办"):
        assert not analyze(asked).negated, asked
    for denied in ("借款不能提前还吗", "没有收到验证码", "猫不吃猫粮怎么办"):
        assert analyze(denied).negated, denied
    # the shipped model was fitted with Chinese negation left to it (`guards_off`): it,
    # not the guard, turns down the denied question
    assert _guard("可以帮家里老人挂号吗", "能不能替我爸妈在网上挂号") != "negation"
    assert _guard("借款可以提前还吗", "借款不能提前还吗") is None
    assert not load_verifier().verify("借款不能提前还吗", "借款可以提前还吗", 0.97).accept


def test_the_us_is_a_country_not_a_person():
    verifier = load_verifier()
    # the same words once "us" is the country: the always-hit rule, not the person guard
    assert verifier.rules("Where can I watch the Premier League in the US?",
                          "where can i watch the premier league in the us", 0.99, True).accept
    assert verifier.rules("Can I enter the US with a criminal record?",
                          "Can we enter the US with a criminal record?", 0.99,
                          True).reason == "pronoun"


def test_chinese_statements_are_told_from_questions():
    from hitrate.semantic.learned import is_zh_question

    for text in ("手机开不了机怎么办", "自考本科难不难", "红烧肉的家常做法", "你好？", "买哪个牌子好"):
        assert is_zh_question(text), text
    for text in ("与此同时，教皇方济各要求汤再担任香港主教三年。", "几乎所有人都去了。"):
        assert not is_zh_question(text), text
    verifier = load_verifier()
    assert verifier.pair_kind("怎么学好英语？", "如何学好英语呢") == "zh"
    # PAWS-X-like: the same words with two names swapped; held to the statements' model
    swapped = ("与此同时，教皇方济各要求汤再担任香港主教三年。",
               "与此同时，汤要求教皇方济各再担任香港主教三年。")
    assert verifier.pair_kind(*swapped) == "zh_statement"
    assert not verifier.verify(*swapped, 0.99).accept


STATEMENTS_APART = [
    ("The `set_verbosity()` method sets the level of the logger.",
     "The `get_verbosity()` method returns the level of the logger."),
    ("The `columns` method lists all columns in numerical order.",
     "The `itercolumns` method iterates over all columns in numerical order."),
]


@pytest.mark.parametrize(("stored", "asked"), STATEMENTS_APART)
async def test_statements_one_identifier_apart_miss(layer, stored, asked):
    assert not await _served(layer, stored, asked, f"statement:{stored}")


def test_english_questions_go_to_the_vector_model_with_the_default_embedder():
    verifier = load_verifier()
    assert verifier.reads_vectors_of(e5().vector_space)
    assert not verifier.reads_vectors_of("upstream:text-embedding-3-small")
    rng = np.random.default_rng(5)
    u, v = (x / np.linalg.norm(x) for x in rng.standard_normal((2, verifier.vector_dim)))
    q, c = "How long do indoor cats live?", "How long should I keep my cat indoors after moving?"
    cosine = 0.95
    assert verifier.score(q, c, cosine, (u, v)) != verifier.score(q, c, cosine)
    assert verifier.threshold_of(q, c, (u, v)) == verifier.vector_thresholds["latin"]
    assert verifier.threshold_of(q, c) == verifier.thresholds["latin"]
    # vectors of another size (another embedder), or a missing one: the first model
    assert verifier.score(q, c, cosine, (u[:8], v[:8])) == verifier.score(q, c, cosine)
    assert verifier.score(q, c, cosine, (u, None)) == verifier.score(q, c, cosine)
    # Chinese pairs and English statements stay with the first model
    for a, b in [("怎么学好英语？", "如何学好英语呢"),
                 ("The map() function applies a callable.", "map() applies a callable to items.")]:
        assert verifier.score(a, b, cosine, (u, v)) == verifier.score(a, b, cosine)


async def test_a_lookup_hands_the_stored_vector_to_the_verifier(layer, monkeypatch):
    learned = layer.settings.learned
    seen: list[tuple] = []
    decide = learned.decide

    def spying(query, cached, cosine, vectors=None):
        seen.append(vectors)
        return decide(query, cached, cosine, vectors)

    monkeypatch.setattr(learned, "decide", spying)
    stored, asked = "How do I learn Rust quickly?", "What is the fastest way to learn Rust?"
    stored_vector = await layer.vector(stored, "spy")
    await layer.remember("key:spy", stored, stored_vector, "spy", "default", None)
    asked_vector = await layer.vector(asked, "spy")
    await layer.candidates(asked, "spy", asked_vector)
    assert len(seen) == 1 and seen[0] is not None
    np.testing.assert_allclose(seen[0][0], asked_vector)
    np.testing.assert_allclose(seen[0][1], stored_vector, atol=1e-6)


def test_vectors_of_another_embedder_are_never_read():
    layer = build_semantic(SemanticConfig(embedder="wordllama"))
    u = np.ones(256, dtype=np.float32) / 16
    assert layer.pair_vectors((u, u)) is None
    assert build_semantic(SemanticConfig()).pair_vectors((u, u)) is not None


def test_what_a_question_asks_for_is_a_feature():
    from hitrate.semantic.features import intents

    assert intents("瓷砖空鼓是什么原因造成的") >= {"cause"}
    assert intents("瓷砖空鼓怎么办") == {"method"}
    assert intents("借款可以分几期") == {"quantity"} and intents("能改期数吗") == {"yes_no"}
    assert intents("Which is better, SQL or NoSQL?") >= {"choice"}
    assert intents("The map() function applies a callable.") == frozenset()
    shared, clash = NAMES.index("intent_shared"), NAMES.index("intent_clash")
    x = features("瓷砖空鼓是什么原因造成的", "瓷砖空鼓怎么办", 0.97)
    assert (x[shared], x[clash]) == (0.0, 1.0)
    x = features("姚明有多高", "姚明的身高是多少啊", 0.97)
    assert (x[shared], x[clash]) == (1.0, 0.0)
    # a side that asks nothing in particular clashes with nothing
    x = features("The map() function applies a callable.", "How does map() work?", 0.9)
    assert (x[shared], x[clash]) == (0.0, 0.0)


def _guard(stored: str, asked: str) -> str | None:
    """The guard that vetoes the pair (None: none does)."""
    verdict = load_verifier().settle(asked, stored, 0.99)
    return None if verdict is None or verdict.accept else verdict.reason


def test_a_dash_between_words_is_punctuation_not_a_symbol():
    assert _guard("How do I tie a fishing hook to the line?",
                  "tying a hook onto fishing line - how does it work?") != "symbols"
    assert _guard("PLA or PETG, which is easier to print?",
                  "PLA vs PETG \u2014 which is easier to print?") != "symbols"
    # arithmetic keeps its symbols; a hyphen inside a word is spelling, left to the model
    assert _guard("What is 2 + 2?", "What is 2 - 2?") == "symbols"
    assert _guard("What is 2-2?", "What is 2+2?") == "symbols"
    assert _guard("What is a non-profit?", "What is a nonprofit?") is None
    assert _guard("Will my insurance go up after a not-at-fault claim?",
                  "will my insurance go up after a not at fault claim") is None
    assert _guard("How do I learn C++?", "How do I learn C#?") == "symbols"


def test_spelled_numbers_count_where_both_sides_name_a_number():
    # the same number, once in digits and once in words
    assert _guard("Can I travel with a passport that expires in 3 months?",
                  "Can I travel if my passport expires in three months?") != "numbers"
    # two different numbers, both in words
    assert _guard("What is the two minute rule?", "What is the five minute rule?") == "numbers"
    assert _guard("Is a 2 hour commute too long?", "Is a three hour commute too long?") \
        == "numbers"
    # a number word on one side only is a way of speaking
    assert _guard("How do I solder wires together?",
                  "What's the proper way to solder two wires?") != "numbers"
    # digits on one side only still differ
    assert _guard("How do I solder wires together?", "How do I solder 2 wires?") == "numbers"


def test_chinese_numerals_count_as_the_numbers_they_name():
    from hitrate.semantic.text import zh_number

    for run, value in [("十一", 11), ("两千", 2000), ("三千五", 3500), ("一百零五", 105),
                       ("一亿两千万", 120_000_000), ("五万", 50_000), ("一二三", None)]:
        assert zh_number(run) == value, run
    # the same number in numerals and in digits
    for pair in [("2000元左右买什么手机好", "预算两千左右推荐一款手机"),
                 ("双十一什么时候买最便宜", "双11几点下单价格最低"),
                 ("word怎么从第三页开始设置页码", "word页码怎么从第3页开始编"),
                 ("给别人转账超过5万需要U盾吗", "单笔给别人转五万多 是不是一定得插U盾"),
                 ("一万块存一年定期利息有多少", "1万元存1年定期到期利息是多少"),
                 ("三国指的是哪三个国家", "三国时期都有哪几个国家啊")]:
        assert _guard(*pair) != "numbers", pair
    # different numbers, in numerals or mixed
    for pair in [("借两万一年利息多少", "借三万一年利息多少"),
                 ("借一万一个月利息多少", "借20000元一个月要还多少利息"),
                 ("十分钟能学会吗", "二十分钟能学会吗"),
                 ("单笔转5万要U盾吗", "单笔转五千要U盾吗")]:
        assert _guard(*pair) == "numbers", pair
    # words whose numerals are not numbers
    assert _guard("这个软件十分好用吗", "这个软件好用吗") != "numbers"
    assert _guard("万一丢了怎么办", "丢了怎么办") != "numbers"


def test_a_chinese_question_may_add_or_drop_the_speakers_pronoun():
    from hitrate.semantic.learned import LearnedVerifier

    model = json.loads(MODEL_PATH.read_text())
    dropped_self = ("为什么我的电脑开不了机", "电脑开不了机是什么原因", 0.97)
    every_guard = LearnedVerifier({**model, "guards_off": {}})
    assert every_guard.rules(*dropped_self, False).reason == "self"
    self_off = LearnedVerifier({**model, "guards_off": {"zh": ["self"]}})
    assert self_off.rules(*dropped_self, False) is None
    # another person's pronoun on one side only, or persons swapped: still the guard's
    for pair in [("你的座右铭是什么？", "座右铭是什么？"), ("和女朋友吵架了怎么哄她", "和女朋友吵架了怎么哄"),
                 ("他的驾照被扣了12分怎么办", "我的驾照被扣了12分怎么办")]:
        assert self_off.rules(*pair, 0.97, False).reason == "pronoun", pair
    # English never had the rule: a generic "you" or "I" on one side only is the model's
    assert every_guard.rules("How do I learn Rust?", "What is the best way to learn Rust?", 0.97,
                             False) is None


def test_the_vector_model_judges_a_change_of_grammatical_person_not_of_words():
    verifier = load_verifier()
    vectors = (np.ones(verifier.vector_dim, np.float32), np.ones(verifier.vector_dim, np.float32))
    same_person = ("Should I get my dog neutered?", "Is it a good idea to neuter my dog?")
    # both ask about the speaker: the vector model decides
    assert verifier.settle(*same_person, 0.99, vectors) is None
    # without vectors (another embedder) the bag-of-words model cannot tell "after I
    # cheated on my partner" from "after they cheated on me": any change of person words
    assert verifier.settle(*same_person, 0.99).reason == "pronoun"
    # a change of person is vetoed either way: "you" spoken to the one answering
    for pair in [*EN_OTHER_PERSON,
                 ("Should I marry a non-virgin girl?", "Will you marry a non-virgin girl?"),
                 ("Why should I believe in God?", "Why do you believe in God?"),
                 ("What should I read next?", "What is your favourite book?")]:
        assert verifier.settle(*pair, 0.99, vectors).reason == "pronoun"
        assert verifier.settle(*pair, 0.99).reason == "pronoun"
    # a generic "you" asks what "I" would: the vector model decides; the word rule vetoes
    for pair in [("How do I learn Rust?", "How do you learn Rust?"),
                 ("Can I take photos in museums?", "can you take pictures inside museums")]:
        assert verifier.settle(*pair, 0.99, vectors) is None
        assert verifier.settle(*pair, 0.99).reason == "pronoun"


def test_a_scripts_model_may_ship_as_its_fold_models():
    from hitrate.semantic.learned import FoldEnsemble, LearnedVerifier

    model = json.loads(MODEL_PATH.read_text())
    single = LearnedVerifier(model)
    zh = model["by_script"]["zh"]
    doubled = {"folds": zh["folds"] * 2} if "folds" in zh else {"folds": [zh, zh]}
    as_folds = LearnedVerifier({**model, "by_script": {**model["by_script"], "zh": doubled}})
    assert isinstance(as_folds.models["zh"], FoldEnsemble)
    # the mean logit of the same fold models twice is the model's own score
    pair = ("借款多久能到账", "借的钱什么时候到账", 0.95)
    assert as_folds.score(*pair) == pytest.approx(single.score(*pair))
    assert single.score(*pair) != pytest.approx(
        LearnedVerifier({**model, "by_script": {**model["by_script"], "zh": model["by_script"]["latin"]}})
        .score(*pair))


def test_the_model_file_names_the_guards_it_was_fitted_without():
    from hitrate.semantic.learned import LearnedVerifier

    model = json.loads(MODEL_PATH.read_text())
    english = ("Can I return a sale item?", "Can't I return a sale item?", 0.97)
    chinese = ("借款可以提前还吗", "借款不能提前还吗", 0.97)
    every_guard = LearnedVerifier({**model, "guards_off": {}})
    assert every_guard.rules(*english, False).reason == "negation"
    assert every_guard.rules(*chinese, False).reason == "negation"
    # a model fitted with Chinese negation pairs left to it decides those itself
    zh_off = LearnedVerifier({**model, "guards_off": {"zh": ["negation"]}})
    assert zh_off.rules(*english, False).reason == "negation"
    assert zh_off.rules(*chinese, False) is None
    assert zh_off.rules("借款5天能到账吗", "借款7天能到账吗", 0.97, False).reason == "numbers"
    for wrong in ({"zh": ["spelling"]}, {"klingon": ["negation"]}):
        with pytest.raises(ValueError, match="unknown guards"):
            LearnedVerifier({**model, "guards_off": wrong})
