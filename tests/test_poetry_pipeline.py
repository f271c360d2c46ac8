"""The poetry plugin wired to real components: entry-point registry, a real GPT + sampler, one-line rewrites."""

from __future__ import annotations

import pytest

from synesthesia.components import FormRequest, GenerationRequest, SamplingSettings
from synesthesia.plugins import Registry
from synesthesia.tokenizer import CharTokenizer, control_tokens_for
from synesthesia_poetry import chinese
from synesthesia_poetry.forms import regenerate_line
from tests.conftest import save_tiny_checkpoint

FENG_QIAO = "月落乌啼霜满天，江枫渔火对愁眠。\n姑苏城外寒山寺，夜半钟声到客船。"


def random_transformer(tokenizer, folder):
    """The transformer plugin's real generator, loading an untrained GPT saved as a real checkpoint."""
    from synesthesia_transformer import TransformerGenerator

    save_tiny_checkpoint(folder, tokenizer=tokenizer, block_size=128)
    return TransformerGenerator().load(str(folder))


def tang_like_tokenizer() -> CharTokenizer:
    table = chinese.rhyme_table()
    chars = sorted({ch for g in sorted(table.group_chars) for ch in sorted(table.group_chars[g])[:10]})
    chars += list(FENG_QIAO)
    return CharTokenizer(list(dict.fromkeys(chars)), control_tokens_for(["zh"], ["七绝"]))


def test_forms_and_renderers_come_from_the_entry_point():
    registry = Registry()
    registry.load_entry_points()
    assert registry.form("jueju7").name == "七绝" and registry.form("lvshi5").name == "五律"
    assert registry.form("cangtou").name == "藏头诗" and registry.form("haiku").language == "en"
    assert {"poem_text", "poem_html", "poem_svg", "poem_png"} <= set(registry.renderers())


def test_a_real_model_under_the_constraints_writes_a_valid_qijue(tmp_path):
    tokenizer = tang_like_tokenizer()
    loaded = random_transformer(tokenizer, tmp_path / "ckpt")
    registry = Registry()
    registry.load_entry_points()
    form = registry.form("七绝")
    request = FormRequest(theme="秋月")
    texts = loaded.generate(GenerationRequest(
        conditioning=form.conditioning(request), sampling=SamplingSettings(seed=3, max_new_tokens=form.max_new_tokens),
        n=4, make_logits_processors=lambda tok: form.logits_processors(tok, request)))
    for text in texts:
        verdict = form.validate(form.finalize(text))
        assert verdict.ok and verdict.score == 1.0, (text, verdict.problems)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_regenerate_one_line_keeps_the_others_and_the_form(index, tmp_path):
    tokenizer = tang_like_tokenizer()
    registry = Registry()
    registry.load_entry_points()
    form = registry.form("七绝")
    text, verdict = regenerate_line(form, FENG_QIAO, index, random_transformer(tokenizer, tmp_path / "ckpt"),
                                    sampling=SamplingSettings(seed=5, max_new_tokens=16), n=4)
    old, new = chinese.split_lines(FENG_QIAO), chinese.split_lines(text)
    assert new[:index] + new[index + 1:] == old[:index] + old[index + 1:]
    assert new[index] != old[index] and len(new[index]) == 7
    assert verdict.ok and verdict.score == 1.0, verdict.problems  # same pattern (仄起首句入韵), same rhyme


def test_synesthesia_run_qijue_writes_a_valid_poem_and_every_layout(tmp_path):
    """`synesthesia run form=七绝 theme=秋月` through the real CLI, on an untrained tang-like checkpoint."""
    import json

    from PIL import Image

    from tests.conftest import run_cli

    checkpoint = save_tiny_checkpoint(tmp_path / "tang", tokenizer=tang_like_tokenizer(), block_size=128)
    run_dir = tmp_path / "run"
    result = run_cli("run", "form=七绝", "theme=秋月", f"model.name={checkpoint}", f"hydra.run.dir={run_dir}",
                     "generation.candidates=2", "generation.max_attempts=1", "seed=1",
                     "renderer.poem_png.width=600", "renderer.poem_png.height=800",
                     env={"SYNESTHESIA_PLUGINS": "transformer,poetry"})
    assert result.returncode == 0, result.stderr
    artwork = run_dir / "artwork"
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["validation"]["ok"] and manifest["validation"]["score"] == 1.0
    text = manifest["text"]
    assert chinese.analyse(text, 4, 7).structure_ok
    for name in ("poem_text/poem.txt", "poem_text/poem.md", "poem_html/poem.html", "poem_svg/poem.svg",
                 "poem_png/poem.png"):
        assert name in manifest["files"], name
        assert manifest["renderers"][name.split("/")[0]]["error"] is None
    with Image.open(artwork / "poem_png" / "poem.png") as image:
        assert image.size == (600, 800)
        embedded = json.loads(image.text["synesthesia-manifest"])
    assert embedded["text"] == text and embedded["seed"] == 1
    assert embedded["model"]["sha256"] == manifest["model"]["sha256"]


def test_regenerate_a_haiku_line_keeps_its_syllables(tmp_path):
    from synesthesia_poetry import english

    haiku = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again"
    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyzASF !,.'\n"), control_tokens_for(["en"], ["haiku"]))
    registry = Registry()
    registry.load_entry_points()
    form = registry.form("haiku")
    text, verdict = regenerate_line(form, haiku, 1, random_transformer(tokenizer, tmp_path / "en"),
                                    sampling=SamplingSettings(seed=2, max_new_tokens=60), n=4)
    old, new = haiku.splitlines(), text.splitlines()
    assert new[0] == old[0] and new[2] == old[2] and new[1] != old[1]
    assert english.line_syllables(new[1]) == 7 and verdict.ok, verdict.problems
