"""Every image prompt carries the artist's theme: it leads the prompt, in English where the glossary knows it,
as written where it does not, and survives the token budget; the renderer records how it was used."""

from __future__ import annotations

import json
import re

import pytest

from synesthesia.components import RenderContext
from synesthesia_imageprompt import ImagePromptOptions, imagery
from synesthesia_imageprompt.render import render

JIANG_XUE = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
JING_YE_SI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
MARKET_HAIKU = "the old market wakes / fishmongers shout in the cold / nets dry on the wall"
WEIGHT = re.compile(r"\(([^():]+):(\d+\.\d)\)")


def render_with_theme(tmp_path, text: str, theme: str, **options) -> tuple[str, dict, dict]:
    context = RenderContext(text=text, form="", language=None, theme=theme, seed=5, out_dir=tmp_path / "img",
                            options=ImagePromptOptions(**options), manifest={"seed": 5})
    files = {p.name: p for p in render(context)}
    prompt = files["prompt.txt"].read_text(encoding="utf-8").strip()
    report = json.loads(files["imagery.json"].read_text(encoding="utf-8"))
    kwargs = json.loads(files["diffusers_kwargs.json"].read_text(encoding="utf-8"))
    return prompt, report, kwargs


@pytest.mark.parametrize("theme,text,phrase,source", [
    ("秋月", JING_YE_SI, "autumn moon", "glossary"),  # a glossary entry of its own
    ("江雪", MARKET_HAIKU, "river snow", "glossary"),  # two entries, in the theme's order; an English poem
    ("離別", JIANG_XUE, "parting", "glossary"),  # Traditional characters
    ("winter sea", MARKET_HAIKU, "winter sea", "as written"),  # the haiku names a market, not the sea
    ("winter sea", JIANG_XUE, "winter sea", "as written"),  # an English theme over a Chinese poem
    ("quantum lighthouse", MARKET_HAIKU, "quantum lighthouse", "as written"),  # "quantum" is in no glossary
    ("饕餮", JIANG_XUE, "饕餮", "as written"),  # characters in no glossary are kept, not dropped
])
def test_the_prompt_leads_with_the_theme(tmp_path, theme, text, phrase, source):
    prompt, report, kwargs = render_with_theme(tmp_path, text, theme)
    first = prompt.split(", ")[0]
    assert WEIGHT.fullmatch(first) and WEIGHT.fullmatch(first).group(1) == phrase
    assert kwargs["prompt"].startswith(phrase + ", ")  # diffusers: the same lead, without weights
    used = report["theme"]
    assert used["theme"] == theme and used["phrase"] == phrase and used["leads_prompt"]
    assert source in {part["source"] for part in used["parts"]}
    # The poem's own imagery follows the theme: its first concrete image is the second piece.
    concrete = [i["en"] for i in report["images"] if i["concrete"]]
    assert re.sub(WEIGHT, r"\1", prompt.split(", ")[1]).startswith(concrete[0].split()[0])


def test_chinese_theme_imagery_comes_from_the_glossary_in_order():
    assert imagery.theme_imagery("秋月").phrase == "autumn moon"
    assert imagery.theme_imagery("江雪").phrase == "river snow"
    assert imagery.theme_imagery("春江花月夜").phrase == "spring river flowers moon night"
    mixed = imagery.theme_imagery("秋 饕餮")
    assert mixed.phrase == "autumn 饕餮" and [p["source"] for p in mixed.parts] == ["glossary", "as written"]
    assert imagery.theme_imagery("  ").phrase == "" and imagery.theme_imagery(None).language == ""


def test_the_theme_survives_a_tight_token_budget(tmp_path):
    prompt, report, _ = render_with_theme(tmp_path, JIANG_XUE, "winter sea", token_budget=12, variations=0)
    assert prompt.startswith("(winter sea:1.3)") and report["clip_tokens"] <= 12
    assert "winter sea" not in report["dropped_for_token_budget"]


def test_without_a_theme_the_poem_leads_and_nothing_is_claimed(tmp_path):
    prompt, report, _ = render_with_theme(tmp_path, JIANG_XUE, "")
    assert prompt.startswith("(mountains:1.3)")
    assert report["theme"] == {"theme": "", "language": "", "phrase": "", "parts": [], "leads_prompt": False,
                               "prompt_piece": ""}


def test_the_comfyui_manifest_records_the_theme(tmp_path):
    render_with_theme(tmp_path, JING_YE_SI, "秋月")
    body = json.loads((tmp_path / "img" / "comfyui_workflow.json").read_text(encoding="utf-8"))
    used = body["extra_data"]["extra_pnginfo"]["synesthesia-manifest"]["imageprompt"]["theme"]
    assert used["phrase"] == "autumn moon" and used["prompt_piece"] == "autumn moon"
