"""Keyword extraction (TF-IDF over a corpus) and mapping a user's theme to keywords a model knows."""

from __future__ import annotations

import json

import pytest

from synesthesia import wordnet
from synesthesia.keywords import (
    KEYWORDS_FILE,
    KeywordExtractor,
    chinese_words,
    english_words,
    language_of,
    load_keyword_vocabulary,
    map_theme,
    split_theme,
)

TANG = [
    "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。",
    "千山鳥飛絕，萬徑人蹤滅。\n孤舟蓑笠翁，獨釣寒江雪。",
    "月落烏啼霜滿天，江楓漁火對愁眠。\n姑蘇城外寒山寺，夜半鐘聲到客船。",
    "空山不見人，但聞人語響。\n返景入深林，復照青苔上。",
    "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。",
    "明月松間照，清泉石上流。\n竹喧歸浣女，蓮動下漁舟。",
]


def test_language_of_tells_chinese_from_english():
    assert language_of(TANG[0]) == "zh"
    assert language_of("Shall I compare thee to a summer's day?") == "en"
    assert language_of("一首 poem with 三 characters in a long english sentence") == "en"


def test_chinese_words_keep_traditional_characters_and_drop_function_words():
    words = chinese_words(TANG[0])
    assert "故鄉" in words and "霜" in words  # jieba ran on 故乡, but the word is cut from the traditional text
    assert all(w in TANG[0] for w in words)
    assert not set(words) & {"是", "之", "不", "上", "更"}
    assert all("，" not in w and "。" not in w for w in words)


def test_english_words_are_lowercase_content_words():
    words = english_words("Shall I compare thee to a Summer's day? Thou art more lovely and more temperate.")
    assert "summer" in words and "lovely" in words and "temperate" in words
    assert not {"thee", "thou", "art", "shall", "and", "more", "the"} & set(words)


def test_speaker_cues_are_not_keywords():
    play = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nKING RICHARD III:\n"
            "Now is the winter of our discontent\n\nHAMLET\nThe sea is cold, Horatio.")
    words = english_words(play)
    assert {"proceed", "winter", "discontent", "sea", "cold", "horatio"} <= set(words)
    assert not {"citizen", "king", "richard", "iii", "hamlet"} & set(words)


def test_extractor_ranks_by_tfidf_and_respects_min_df():
    texts = [
        "The moon rose over the sea. The moon was pale.",
        "A ship sailed on the sea at dawn.",
        "The moon and the stars above the harbour.",
        "Winter winds over the harbour and the ship.",
    ]
    extractor = KeywordExtractor("en", top_k=2, min_df=2).fit(texts)
    assert extractor.document_frequency["moon"] == 2
    first = extractor.extract(0)
    assert first[0] == "moon"  # twice in the text, in two documents
    assert "pale" not in first  # in one document only: below min_df
    # Words that occur in fewer than min_df texts are never keywords.
    for i in range(len(texts)):
        assert all(extractor.document_frequency[w] >= 2 for w in extractor.extract(i))
    # A new text is scored with the fitted document frequencies.
    assert extractor.extract("the ship, the ship, and the moon") == ["ship", "moon"]


def test_chinese_extractor_finds_shared_imagery():
    extractor = KeywordExtractor("zh", top_k=3, min_df=2).fit(TANG)
    assert extractor.document_frequency["霜"] == 2
    assert extractor.extract(2) == ["霜"]  # the one word this poem shares with another
    assert extractor.extract(1) == []  # shares none
    for i, text in enumerate(TANG):
        assert all(k in text and extractor.document_frequency[k] >= 2 for k in extractor.extract(i))


def test_extractor_rejects_unknown_language():
    with pytest.raises(ValueError):
        KeywordExtractor("fr")


def test_split_theme_handles_separators_and_long_chinese():
    assert split_theme("autumn, moon  geese") == ["autumn", "moon", "geese"]
    assert split_theme(["秋", "月", "秋"]) == ["秋", "月"]
    assert split_theme("秋月") == ["秋月"]
    assert len(split_theme("秋天的月亮和大雁")) > 1  # long Chinese themes are segmented


def test_map_theme_for_a_chinese_model_glosses_english_and_converts_script():
    vocabulary = {"秋": 5, "月": 9, "雁": 2, "明月": 4}
    result = map_theme("autumn moon wild geese", language="zh", vocabulary=vocabulary)
    assert result.keywords == ["秋", "月", "雁"]
    assert result.substitutions["autumn"] == "秋"
    assert result.unknown == ["wild"]
    # Simplified input reaches a traditional model in its own characters.
    result = map_theme("明月 乡愁", language="zh", vocabulary={"明月": 1, "鄉": 1, "愁": 1})
    assert result.keywords == ["明月", "鄉", "愁"]
    assert result.substitutions == {"乡愁": "鄉 愁"}


def test_map_theme_uses_the_tokenizer_when_a_word_was_never_a_keyword():
    from synesthesia.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.train(TANG)
    result = map_theme("江雪 電腦", language="zh", vocabulary={"明月": 1}, tokenizer=tokenizer)
    assert result.keywords == ["江", "雪"]  # split into characters the model can write
    assert result.unknown == ["電腦"]  # neither character is in the tokenizer
    assert "電腦" in result.describe()


def test_map_theme_for_an_english_model_maps_by_form_and_meaning_never_by_spelling():
    vocabulary = {"moon": 3, "rose": 2, "winter": 4, "crown": 1, "told": 2, "cock": 1, "train": 1, "fiddle": 1}
    result = map_theme("Moons, winters, crowne, 月, zzzz", language="en", vocabulary=vocabulary)
    assert result.keywords == ["moon", "winter"]  # inflections are the same word
    assert result.substitutions == {"Moons": "moon", "winters": "winter"}
    assert result.unknown == ["crowne", "月", "zzzz"]  # crowne is spelt like crown, but is no word we know
    # The garbles the issue found: old → told, clock → cock, rain → train. Meaning finds violin → fiddle.
    garbled = map_theme("old violin, broken clock, city rain", language="en", vocabulary=vocabulary)
    assert not {"told", "cock", "train"} & set(garbled.keywords)
    if wordnet.available():
        assert garbled.substitutions.get("violin") == "fiddle"
    # Glue words are no theme: "harbor at dawn" never maps "at".
    assert "at" not in map_theme("harbor at dawn", language="en", vocabulary={"at": 1}).keywords
    # Without a vocabulary every English word is passed through.
    assert map_theme("sea storm", language="en").keywords == ["sea", "storm"]


def test_map_theme_caps_the_number_of_keywords():
    result = map_theme("spring summer autumn winter moon sun", language="zh", max_keywords=3)
    assert result.keywords == ["春", "夏", "秋"]


def test_load_keyword_vocabulary(tmp_path):
    assert load_keyword_vocabulary(tmp_path) is None
    (tmp_path / KEYWORDS_FILE).write_text(json.dumps({"language": "zh", "keywords": {"月": 3}}), encoding="utf-8")
    assert load_keyword_vocabulary(tmp_path) == {"月": 3}
