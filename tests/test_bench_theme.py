"""The meaning benchmark's metrics (benchmarks/bench_theme.py) on hand-made poems, so they cannot silently break."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_theme.py"

# Holds 江 and 雪, and 鄉 (traditional 乡) but not 故; one 不 and one 無 in 20 characters.
COVERING = "寒江千里雪，遊子夢鄉關。\n不見孤舟影，無人獨往還。"
NOT_COVERING = "春風吹柳綠，花落滿山紅。\n日暮人歸去，青山一望中。"
SONNET_RHYMED = """The broken clock has stopped upon the hour,
And in the hall the dust of days is deep;
No hand will turn, no spring regains its power,
The room is still as any child asleep.
I wind the key and hear the silence ring,
A bell that never chimes, a heart at rest;
The pendulum hangs low, a weary thing,
As if the house had swallowed every guest.
Yet time goes on outside the frozen glass,
The river runs, the swallow finds the sky,
The seasons turn, the years refuse to pass
For those who listen while the hours die.
So let it stand, the clock upon the wall,
That kept no time, and therefore kept it all."""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_theme", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_theme_files_are_fresh_and_long_enough(bench):
    zh = bench.load_themes(bench.THEMES_DIR / "zh.txt")
    en = bench.load_themes(bench.THEMES_DIR / "en.txt")
    assert len(zh) >= 30 and len(en) >= 30
    assert {1, 2, 3, 4} <= {len(theme) for theme, _ in zh[:30]}
    assert not {"秋月", "autumn", "sea", "winter sea", "秋雨", "moon"} & {theme for theme, _ in zh + en}
    assert all(related for _, related in en)  # every English theme lists its related words
    assert len({t for t, _ in zh}) == len(zh) and len({t for t, _ in en}) == len(en)


def test_chinese_coverage_reads_traditional_as_simplified(bench):
    assert bench.zh_theme_chars("故乡") == ["故", "乡"]
    assert bench.zh_theme_chars("无边之塞") == ["边", "塞"]  # function characters are not content
    assert bench.zh_coverage(COVERING, "江雪") == (True, True)
    assert bench.zh_coverage(COVERING, "故乡") == (True, False)  # 鄉 counts for 乡; 故 is missing
    assert bench.zh_coverage(NOT_COVERING, "江雪") == (False, False)
    assert bench.zh_coverage(NOT_COVERING, "边塞") == (False, False)


def test_theme_word_kept_whole_or_split(bench):
    assert bench.zh_theme_pairs("黄鹤楼") == ["黄鹤", "鹤楼"]
    assert bench.zh_pair_kept(COVERING, "江雪") is False  # 江 and 雪 both there, but apart
    assert bench.zh_pair_kept("長城萬里遠，月照邊關。", "长城") is True
    assert bench.zh_pair_kept("長河落日，城上月。", "长城") is False
    assert bench.zh_pair_kept(COVERING, "雁") is None  # one character: nothing to keep whole


def test_english_coverage_theme_words_related_words_and_plurals(bench):
    assert bench.en_theme_words("the king's crown") == ["king", "crown"]
    assert bench.en_theme_words("harbor at dawn") == ["harbor", "dawn"]
    poem = "The ships lie still beside the quay,\nthe morning grey upon the tide."
    assert bench.en_coverage(poem, "harbor at dawn", ["ship", "tide"]) == (False, True)  # ships: plural of ship
    assert bench.en_coverage("Two harbors wake.", "harbor at dawn", []) == (True, True)
    assert bench.en_coverage("A shipment of tea.", "harbor at dawn", ["ship"]) == (False, False)  # not a plural
    assert bench.en_coverage("The King's head aches.", "the king's crown", []) == (True, True)


def test_identical_outputs_and_shared_lines(bench):
    texts = [COVERING, NOT_COVERING, COVERING + "\n", "  " + NOT_COVERING.replace("\n", "\n ")]
    assert bench.identical_count(texts) == 4
    assert bench.identical_count([COVERING, NOT_COVERING]) == 0
    lines = [bench.zh_lines(t) for t in (COVERING, NOT_COVERING, "寒江千里雪，明月照高樓。")]
    assert bench.shared_lines(lines) == (2, 10)  # 寒江千里雪 twice


def test_filler_and_distinct_2(bench):
    assert bench.filler_counts(COVERING) == (20, 1, 1)
    assert bench.filler_counts("無无不") == (3, 1, 2)
    assert bench.distinct_2([list("abab")]) == pytest.approx(2 / 3)
    assert bench.distinct_2(bench.zh_bigram_units([COVERING, COVERING])) == pytest.approx(0.5)
    assert math.isnan(bench.distinct_2([]))


def test_plan_landed_in_its_line(bench):
    plan = [{"line": 0, "keyword": "江"}, {"line": 1, "keyword": "鄉"}, {"line": 2, "keyword": "雪"},
            {"line": 3, "keyword": "独"}]
    assert bench.plan_landed(COVERING, plan, "zh") == (3, 4)  # 雪 is in line 0, not 2; 獨 counts for 独
    one_based = [{"line": 4, "keyword": "獨"}, {"line": 1, "keyword": "江"}]
    assert bench.plan_landed(COVERING, one_based, "zh") == (2, 2)
    assert bench.plan_landed("a ship\nthe dawn", [{"line": 1, "keyword": "dawn"}], "en") == (1, 1)


def test_summary_of_a_generated_row(bench):
    poems = [
        {"text": COVERING, "theme": "江雪", "seed": 0, "valid": True, "seconds": 1.0,
         "manifest_theme": {"keywords": ["江", "雪"], "plan": [{"line": 0, "keyword": "江"}]}},
        {"text": NOT_COVERING, "theme": "边塞", "seed": 0, "valid": False, "seconds": 3.0, "manifest_theme": None},
        {"text": NOT_COVERING, "theme": "故乡", "seed": 0, "valid": True, "seconds": 2.0, "manifest_theme": None},
    ]
    row = bench.summarise(poems, "zh", "五绝")
    assert row["n"] == 3 and row["cov_any"] == pytest.approx(1 / 3) and row["cov_all"] == pytest.approx(1 / 3)
    assert row["identical"] == pytest.approx(2 / 3)
    assert row["plan_landed"] == 1.0 and row["keywords_found"] == 1.0
    assert row["bu"] == pytest.approx(1 / 60) and row["valid"] == pytest.approx(2 / 3)
    assert row["form_acc"] == 1.0 and row["s_per_poem"] == pytest.approx(2.0)
    without_plan = bench.summarise(poems[1:], "zh", "五绝")
    assert "plan_landed" not in without_plan and "keywords_found" not in without_plan


def test_english_full_rhyme_scheme(bench):
    lines = SONNET_RHYMED.splitlines()
    assert bench.full_scheme(lines, "ABABCDCDEFEFGG", limerick=False)
    assert not bench.full_scheme(lines[1:] + lines[:1], "ABABCDCDEFEFGG", limerick=False)
    row = bench.summarise([{"text": SONNET_RHYMED, "theme": "broken clock", "related": ["time"], "seed": 0}],
                          "en", "sonnet")
    assert row["scheme_full"] == 1.0 and row["cov_word"] == 1.0 and "valid" not in row
