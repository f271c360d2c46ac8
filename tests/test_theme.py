"""Theme understanding, theme-constrained decoding and ranking by meaning (issue: Meaning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synesthesia import wordnet
from synesthesia.components import Form, FormRequest, Validation
from synesthesia.pipeline import choose_best, load_generator, plan, write_candidates
from synesthesia.theme import contains_keyword, text_quality, theme_coverage, understand_theme
from synesthesia.tokenizer import CharTokenizer
from synesthesia_poetry import english
from synesthesia_poetry.constraints import ClassicalVerseProcessor

needs_wordnet = pytest.mark.skipif(not wordnet.available(), reason="WordNet files (Debian wordnet-base) not installed")


def test_a_chinese_theme_gives_its_own_characters_then_curated_imagery():
    theme = understand_theme("江雪", "zh")
    assert theme.words == ["江", "雪"] and theme.phrases == ["江雪"]
    assert theme.keywords[0] == "江雪" and "寒" in theme.related and "舟" in theme.related  # the phrase whole
    assert understand_theme("故乡", "zh").words == ["故", "鄉"]  # the model writes traditional characters
    assert understand_theme("落花时节", "zh").keywords[:2] == ["落花", "時節"]
    glossed = understand_theme("autumn moon, zzqx", "zh")
    assert glossed.words == ["秋", "月"] and glossed.unknown == ["zzqx"]
    assert understand_theme("", "zh").keywords == []


@needs_wordnet
def test_an_english_theme_gives_its_words_then_related_words_by_meaning():
    theme = understand_theme("harbor at dawn", "en")
    assert theme.words == ["harbor", "dawn"]  # "at" is glue
    assert {"morning", "sunrise", "port"} & set(theme.related)
    assert understand_theme("a lighthouse keeper's last night", "en").words == ["lighthouse", "keeper", "last", "night"]
    # Related words are common words, never spelling neighbours.
    assert "told" not in understand_theme("old violin", "en").keywords
    assert "fiddle" in understand_theme("old violin", "en").related
    # A Chinese theme for an English form goes through the glossary.
    assert understand_theme("秋月", "en").words == ["autumn", "moon"]


def test_coverage_and_quality_measures():
    theme = understand_theme("江雪", "zh")
    assert theme_coverage("江上寒舟雪", theme) > theme_coverage("江上寒舟", theme) > theme_coverage("山中", theme)
    assert contains_keyword("The lighthouses burn", "lighthouse")
    assert not contains_keyword("lighthousekeeper", "lighthouse")
    assert text_quality("不知不見不如歸", "zh")["filler"] == pytest.approx(3 / 7)
    assert text_quality("春風秋月", "zh")["penalty"] == 0


def test_ranking_puts_theme_coverage_before_likelihood():
    form = Form(name="any", description="", language="zh", conditioning=lambda r: None,
                validate=lambda text, request=None: Validation(ok=True, score=1.0))
    theme = understand_theme("江雪", "zh")
    texts = ["春風明月照山中", "江上孤舟雪滿天"]
    best, _, scores = choose_best(form, texts, FormRequest(theme="江雪", keywords=theme.keywords),
                                  likelihoods=[-1.0, -3.0], theme=theme)
    assert best == 1 and scores[1]["coverage"] > scores[0]["coverage"]
    # Without a theme, the likelier text wins.
    best, _, _ = choose_best(form, texts, FormRequest(), likelihoods=[-1.0, -3.0])
    assert best == 0


def _random_decode(tokenizer, processor, batch=8, steps=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    generated = torch.zeros(batch, 0, dtype=torch.long)
    for _ in range(steps):
        logits = processor(generated, torch.randn(batch, tokenizer.vocab_size, generator=gen) * 3)
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(1)
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        if (nxt == tokenizer.eos_id).all():
            break
    return [tokenizer.decode([t for t in row.tolist() if t != tokenizer.eos_id]) for row in generated]


def test_planned_keywords_land_in_their_lines_and_the_form_still_holds():
    from synesthesia_poetry import chinese
    from synesthesia_poetry.forms import all_forms

    table = chinese.rhyme_table()
    chars = [ch for g in sorted(table.group_chars) for ch in sorted(table.group_chars[g]) if chinese.is_han(ch)][::7]
    tokenizer = CharTokenizer(list(dict.fromkeys(chars + list("江雪寒舟不無") + list("，。\n"))))
    form = {f.name: f for f in all_forms()}["七绝"]
    plan_ = ["江雪", "雪", "寒", "舟"]  # a theme word is written whole, in its line
    texts = _random_decode(tokenizer, ClassicalVerseProcessor(tokenizer, 4, 7, line_keywords=plan_))
    for text in texts:
        lines = chinese.split_lines(text)
        assert len(lines) == 4 and all(k in line for k, line in zip(plan_, lines)), text
        # No stutter: a planned character at most twice besides its own line's placement.
        assert all(text.count(ch) <= 3 for ch in "江雪寒舟"), text
        assert form.validate(text).ok, text
        assert sum(text.count(ch) for ch in "不無") <= 1, text
    # The same random logits without the plan almost never hold all four.
    free = _random_decode(tokenizer, ClassicalVerseProcessor(tokenizer, 4, 7))
    assert sum(all(k in line for k, line in zip(plan_, chinese.split_lines(t))) for t in free) <= 1


def _write(form: str, theme: str, model: str, seed: int = 0, candidates: int = 4) -> tuple[str, object, object]:
    plan_ = plan({"form": form, "theme": theme, "seed": seed, "model": {"name": model, "threads": 1},
                  "generation": {"candidates": candidates}, "pipeline": {"renderers": []}})
    text, verdict, _ = write_candidates(plan_, load_generator(plan_), log=lambda m: None)
    return text, verdict, plan_


@needs_wordnet
def test_shipped_english_model_writes_a_rhyming_limerick_about_its_theme():
    text, verdict, plan_ = _write("limerick", "lighthouse", "shakespeare")
    lines = text.splitlines()
    assert verdict.ok, (text, verdict.problems)
    assert english.scheme_accuracy(lines, "AABBA", allow_identical=True) == 1.0, text
    assert contains_keyword(text, "lighthouse"), text
    other, _, _ = _write("limerick", "broken clock", "shakespeare")
    assert other != text  # different themes, same seed: different poems


def test_shipped_tang_model_holds_the_theme_and_the_form():
    for theme in ("江雪", "边塞"):
        text, verdict, plan_ = _write("五绝", theme, "tang")
        assert verdict.ok and all(ch in text for ch in plan_.theme.words), (theme, text)


def test_a_warm_process_loads_each_model_once(tmp_path):
    from synesthesia.pipeline import GeneratorCache, run_pipeline

    cache = GeneratorCache()
    config = {"form": "五绝", "model": {"name": "tang", "threads": 1}, "generation": {"candidates": 2},
              "pipeline": {"renderers": []}}
    first = run_pipeline({**config, "theme": "江雪"}, tmp_path / "a", generators=cache, log=lambda m: None)
    second = run_pipeline({**config, "theme": "边塞"}, tmp_path / "b", generators=cache, log=lambda m: None)
    assert len(cache) == 1 and second.manifest["timings"]["load_model"] < 0.05
    assert first.text != second.text


def test_artwork_paths_are_absolute_after_run_and_render(tmp_path, monkeypatch):
    from synesthesia.pipeline import render_revision, run_pipeline

    monkeypatch.chdir(tmp_path)
    config = {"form": "五绝", "theme": "江雪", "model": {"name": "tang", "threads": 1},
              "generation": {"candidates": 2}, "pipeline": {"renderers": []}}
    made = run_pipeline(config, Path("rel"), log=lambda m: None)
    (made.path / "text.txt").write_text("孤舟蓑笠翁，獨釣寒江雪。\n千山鳥飛絕，萬徑人蹤滅。\n", encoding="utf-8")
    revised = render_revision(Path("rel"), log=lambda m: None)
    assert made.path.is_absolute() and revised.path == made.path
