"""Imagery extraction from real poems: classical Chinese (Simplified and Traditional) and English."""

from __future__ import annotations

from synesthesia_imageprompt import imagery

JING_YE_SI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 李白《静夜思》
JING_YE_SI_TRADITIONAL = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"
FENG_QIAO_YE_BO = "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。"  # 张继《枫桥夜泊》
JIANG_XUE = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"  # 柳宗元《江雪》
SONNET_73 = """That time of year thou mayst in me behold
When yellow leaves, or none, or few, do hang
Upon those boughs which shake against the cold,
Bare ruin'd choirs, where late the sweet birds sang."""
BASHO = "An old silent pond / A frog jumps into the pond— / Splash! Silence again."


def english(result: imagery.Imagery) -> set[str]:
    return {image.en for image in result.images}


def test_jing_ye_si_moon_frost_home():
    result = imagery.extract(JING_YE_SI)
    assert result.language == "zh"
    found = english(result)
    assert {"bright moon", "frost", "hometown", "bed"} <= found
    assert result.images[0].concrete  # concrete images rank before moods and actions
    kinds = {image.en: image.kind for image in result.images}
    assert kinds["frost"] == "weather" and kinds["longing"] == "mood"


def test_traditional_characters_give_the_same_imagery():
    simplified = imagery.extract(JING_YE_SI)
    traditional = imagery.extract(JING_YE_SI_TRADITIONAL)
    assert traditional.converted_from_traditional and not simplified.converted_from_traditional
    assert [(i.en, i.kind) for i in traditional.images] == [(i.en, i.kind) for i in simplified.images]


def test_lexicon_words_stay_whole_when_segmenting():
    found = english(imagery.extract(FENG_QIAO_YE_BO))
    # 寒山寺 and 渔火 are single images, not 寒 cold + 山 mountains + 寺 temple.
    assert {"Hanshan Temple", "fishing-boat lanterns", "riverside maples", "crows", "frost", "midnight"} <= found
    assert "mountains" not in found


def test_jiang_xue_lone_boat_and_fisherman():
    result = imagery.extract(JIANG_XUE)
    found = english(result)
    assert {"lone boat", "straw cloak and hat", "old man", "cold river", "snow", "birds"} <= found
    assert "千" in result.ignored  # a numeral is a function word, skipped on purpose, not "not understood"


def test_unknown_words_are_reported():
    zh = imagery.extract("月下饕餮")
    assert "moon" in english(zh) and zh.not_understood == ["饕餮"]
    en = imagery.extract("The moon over the glimmerglass zorbit")
    assert english(en) == {"moon"}
    assert en.not_understood == ["glimmerglass", "zorbit"]
    assert "the" in en.ignored and "the" not in en.not_understood


def test_english_sonnet_lemmas_and_phrases():
    result = imagery.extract(SONNET_73)
    assert result.language == "en"
    found = english(result)
    assert {"yellow leaves", "boughs", "sweet birds"} <= found
    assert "bear" not in found  # "Bare" must not be lemmatised to the animal


def test_english_plurals_and_irregular_forms():
    found = english(imagery.extract("The wild geese fly over the hills; foxes sleep under pines at dusk"))
    assert {"wild geese", "hills", "foxes", "pines", "dusk"} <= found
    assert "wild" not in found


def test_haiku_counts_repeated_images():
    result = imagery.extract(BASHO)
    pond = next(image for image in result.images if image.en == "pond")
    assert pond.count == 2 and result.images[0] is pond
    assert "frog" in english(result)


def test_actions_attach_to_the_thing_that_does_them():
    result = imagery.extract(FENG_QIAO_YE_BO)
    crows = next(image for image in result.images if image.en == "crows")
    assert crows.doing == "crying" and crows.phrase == "crows crying"
    # 门泊东吴万里船: the boat is moored at the gate, so the gate takes no action.
    gate = next(i for i in imagery.extract("窗含西岭千秋雪，门泊东吴万里船。").images if i.en == "gate")
    assert gate.doing == ""


def test_months_are_not_moons():
    found = english(imagery.extract("停车坐爱枫林晚，霜叶红于二月花。"))
    assert "moon" not in found and {"frosted leaves", "flowers"} <= found
