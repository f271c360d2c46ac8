"""Corpus preparation from small collections the tests write: chinese-poetry layout, text, folders, JSONL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synesthesia.corpus import (
    classify_form,
    cli_prepare,
    format_poem,
    main,
    poem_lines,
    prepare,
    read_records,
    split_passages,
)
from synesthesia.errors import CorpusError

POEMS = [
    {"title": "靜夜思", "author": "李白", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
    {"title": "楓橋夜泊", "author": "張繼",
     "paragraphs": ["月落烏啼霜滿天，江楓漁火對愁眠。", "姑蘇城外寒山寺，夜半鐘聲到客船。"]},
    {"title": "春望", "author": "杜甫",
     "paragraphs": ["國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。", "烽火連三月，家書抵萬金。",
                    "白頭搔更短，渾欲不勝簪。"]},
    {"title": "登高", "author": "杜甫",
     "paragraphs": ["風急天高猿嘯哀，渚清沙白鳥飛迴。", "無邊落木蕭蕭下，不盡長江滾滾來。",
                    "萬里悲秋常作客，百年多病獨登臺。", "艱難苦恨繁霜鬢，潦倒新停濁酒杯。"]},
    {"title": "長歌", "author": "無名", "paragraphs": ["青青園中葵，朝露待日晞。", "陽春布德澤，萬物生光輝。",
                                                     "常恐秋節至，焜黃華葉衰。"]},
    {"title": "殘篇", "author": "無名", "paragraphs": ["□□明月光，疑是地上霜。"]},
    {"title": "一句", "author": "無名", "paragraphs": ["獨坐幽篁裏。"]},
    {"title": "注", "author": "王維", "paragraphs": ["空山不見人（一作空山無人見），但聞人語響。",
                                                     "返景入深林，復照青苔上。"]},
]


def write_chinese_poetry(root: Path, poems=POEMS) -> Path:
    folder = root / "package" / "dist" / "quantangshi"
    folder.mkdir(parents=True)
    half = len(poems) // 2
    (folder / "poet.tang.0.json").write_text(json.dumps(poems[:half], ensure_ascii=False), encoding="utf-8")
    (folder / "poet.tang.1000.json").write_text(json.dumps(poems[half:], ensure_ascii=False), encoding="utf-8")
    (folder / "poet.song.0.json").write_text(json.dumps([POEMS[0]], ensure_ascii=False), encoding="utf-8")
    return root / "package"


def test_poem_lines_and_forms():
    assert classify_form(poem_lines(POEMS[0]["paragraphs"])) == "五绝"
    assert classify_form(poem_lines(POEMS[1]["paragraphs"])) == "七绝"
    assert classify_form(poem_lines(POEMS[2]["paragraphs"])) == "五律"
    assert classify_form(poem_lines(POEMS[3]["paragraphs"])) == "七律"
    assert classify_form(poem_lines(POEMS[4]["paragraphs"])) == "古诗"  # six lines
    assert poem_lines(POEMS[5]["paragraphs"]) is None  # lacuna
    # Editorial notes in brackets are removed, not learned.
    assert poem_lines(POEMS[7]["paragraphs"])[0] == "空山不見人"


def test_format_poem_puts_one_couplet_per_line():
    lines = poem_lines(POEMS[0]["paragraphs"])
    assert format_poem(lines) == "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"
    assert format_poem(["一二三四五", "六七八九十", "甲乙丙丁戊"]).endswith("\n甲乙丙丁戊。")


def test_prepare_chinese_poetry(tmp_path):
    source = write_chinese_poetry(tmp_path)
    out = tmp_path / "out"
    manifest = prepare(source, out, val_fraction=0.25, min_df=1, keyword_drop=0.0)
    assert manifest["kind"] == "chinese-poetry"
    assert manifest["files"] == 2  # the Song file is not read for dynasty=tang
    assert manifest["records"]["read"] == len(POEMS)
    assert manifest["records"]["skipped"] == {"not clean verse": 1, "single line": 1}
    train, val = read_records(out / "train.jsonl"), read_records(out / "val.jsonl")
    assert len(train) + len(val) == 6 and len(val) == 2
    records = train + val
    assert {r["form"] for r in records} == {"五绝", "七绝", "五律", "七律", "古诗"}
    assert all(r["language"] == "zh" for r in records)
    assert any(r["text"].startswith("床前明月光，疑是地上霜。") for r in records)  # traditional kept
    assert all(r["keywords"] for r in records)  # keyword_drop=0: every poem has some of its own words
    for record in records:
        assert all(k in record["text"] for k in record["keywords"])  # keywords come from the poem itself
    vocabulary = json.loads((out / "keywords.json").read_text(encoding="utf-8"))["keywords"]
    assert set(vocabulary) == {k for r in records for k in r["keywords"]}
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["forms"]["train"] == manifest["forms"]["train"]
    assert sum(manifest["forms"]["train"].values()) == len(train)
    assert not list(out.glob(".*"))  # no temporary files left


def test_prepare_can_keep_only_some_forms_and_simplify(tmp_path):
    source = write_chinese_poetry(tmp_path)
    manifest = prepare(source, tmp_path / "out", forms=["五绝", "七绝"], simplified=True, val_fraction=0, min_df=1)
    records = read_records(tmp_path / "out" / "train.jsonl")
    assert sorted(r["form"] for r in records) == ["七绝", "五绝", "五绝"]
    assert manifest["records"]["skipped"]["form 古诗 not requested"] == 1
    assert manifest["script"] == "simplified"
    text = "\n".join(r["text"] for r in records)
    assert "举头望明月，低头思故乡。" in text and "舉" not in text


def test_prepare_same_seed_same_dataset(tmp_path):
    source = write_chinese_poetry(tmp_path)
    prepare(source, tmp_path / "a", seed=3, min_df=1)
    prepare(source, tmp_path / "b", seed=3, min_df=1)
    for name in ("train.jsonl", "val.jsonl", "keywords.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


SPEECHES = """FIRST CITIZEN:
Before we proceed any further, hear me speak of the harvest and the famine.

ALL:
Speak, speak of the harvest.

FIRST CITIZEN:
You are all resolved rather to die than to famish in this famine?

ALL:
Resolved. resolved.

MENENIUS:
The kingdom and the crown are heavy with the famine and the harvest.

SECOND CITIZEN:
The crown, the crown! We will have corn at our own price.
"""


def test_prepare_text_file_keeps_order_and_holds_out_the_tail(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(SPEECHES * 3, encoding="utf-8")
    manifest = prepare(path, tmp_path / "out", min_chars=40, max_chars=120, val_fraction=0.2, min_df=2)
    assert manifest["kind"] == "text" and manifest["options"]["split"] == "tail"
    train = read_records(tmp_path / "out" / "train.jsonl")
    val = read_records(tmp_path / "out" / "val.jsonl")
    assert train and val
    assert all(r["language"] == "en" and r["form"] is None for r in train + val)
    joined = "\n\n".join(r["text"] for r in train + val)
    assert joined == (SPEECHES * 3).strip("\n")  # nothing lost, nothing reordered
    val_share = sum(len(r["text"]) for r in val) / sum(len(r["text"]) for r in train + val)
    assert 0.2 <= val_share < 0.45
    assert any("crown" in r["keywords"] for r in train)  # twice in its passage, in several passages
    assert all(set(r["keywords"]) <= {"harvest", "famine", "crown", "citizen", "resolved", "speak", "kingdom",
                                      "menenius", "corn", "price", "proceed", "famish", "die", "hear"}
               for r in train + val)


def test_split_passages_merges_short_paragraphs_and_reads_fortunes():
    passages = split_passages("a\n\nb\n\nc\n\n" + "x" * 50, min_chars=3, max_chars=10)
    assert passages == ["a\n\nb\n\nc", "x" * 50]
    fortunes = "Roses are red,\nViolets are blue.\n%\nAnother verse\nof two lines.\n%\nA third.\n"
    assert split_passages(fortunes) == ["Roses are red,\nViolets are blue.", "Another verse\nof two lines.", "A third."]


def test_prepare_user_folder_with_text_markdown_and_jsonl(tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("The sea at night\nis black and wide.\n\nThe gulls are gone.\n", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("秋風吹落葉，明月照寒江。\n孤雁南飛去，天涯思故鄉。\n", encoding="utf-8")
    (folder / "c.jsonl").write_text(
        json.dumps({"text": "Snow on the pines", "form": "haiku", "keywords": "snow pine"}) + "\n\n"
        + json.dumps({"text": "A second poem", "language": "en"}) + "\n",
        encoding="utf-8",
    )
    (folder / ".hidden.txt").write_text("should not be read", encoding="utf-8")
    (folder / "notes.pdf").write_bytes(b"%PDF")
    counts = cli_prepare(str(folder), tmp_path / "out", val_fraction=0, min_chars=10, min_df=1)
    records = read_records(tmp_path / "out" / "train.jsonl")
    texts = {r["text"]: r for r in records}
    assert len(records) == 4 and counts["records"]["train"] == 4
    assert texts["Snow on the pines"]["form"] == "haiku"
    assert texts["Snow on the pines"]["keywords"] == ["snow", "pine"]  # given keywords are kept
    chinese = [r for r in records if r["language"] == "zh"]
    assert len(chinese) == 1 and chinese[0]["form"] == "五绝"
    assert not any("should not" in r["text"] for r in records)
    assert counts["out"] == str(tmp_path / "out")
    assert all(Path(f).exists() for f in counts["files"])


def test_bad_inputs_raise_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        prepare(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .txt, .md or .jsonl"):
        prepare(tmp_path / "empty", tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2"):
        prepare(bad, tmp_path / "out")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"broken.jsonl:1: not valid JSON"):
        prepare(broken, tmp_path / "out")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        prepare(latin1, tmp_path / "out")
    source = write_chinese_poetry(tmp_path / "cp")
    with pytest.raises(CorpusError, match="no usable texts"):
        prepare(source, tmp_path / "out", forms=["sonnet"])
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_main_runs_as_a_module(tmp_path):
    source = write_chinese_poetry(tmp_path)
    counts = main([str(source), "--out", str(tmp_path / "out"), "--val-fraction", "0", "--min-df", "1"])
    assert counts["records"]["train"] == 6
    done = subprocess.run(
        [sys.executable, "-m", "synesthesia.corpus", str(source), "--out", str(tmp_path / "out2"),
         "--forms", "七律", "--val-fraction", "0"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(done.stdout)["forms"] == {"七律": 1}
