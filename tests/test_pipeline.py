"""The pipeline end to end through the real CLI: Hydra overrides, sweeps, manifests, revisions, failures.

A test plugin (a real distribution on PYTHONPATH, found through the entry point) contributes a simple
form, two renderers and an ``artwork_created`` listener; the model is a small real checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import make_plugin_dist, run_cli

TEST_PLUGIN = """
import json, os
from pathlib import Path
from pydantic import BaseModel, Field
import synesthesia
from synesthesia.components import Conditioning, Form, Renderer, Validation

def conditioning(request):
    return Conditioning(form=None, keywords=request.theme.split(), language="en", prefix="")

def validate(text, request=None):
    lines = [l for l in text.splitlines() if l.strip()]
    return Validation(ok=len(lines) >= 1, score=min(1.0, len(lines) / 4), problems=[] if lines else ["empty"])

class ShoutOptions(BaseModel):
    suffix: str = "!"
    repeat: int = Field(1, ge=1, le=5)

def shout(ctx):
    path = ctx.out_dir / "shout.txt"
    path.write_text((ctx.text.upper() + ctx.options.suffix) * ctx.options.repeat, encoding="utf-8")
    return [path]

class ExplodeOptions(BaseModel):
    explode: bool = False

def explode(ctx):
    (ctx.out_dir / "partial.txt").write_text("half", encoding="utf-8")
    if ctx.options.explode:
        raise RuntimeError("kaboom")
    return [ctx.out_dir / "partial.txt"]

@synesthesia.hookimpl
def register_forms(register):
    register(Form(name="lines", description="any lines", language="en", conditioning=conditioning,
                  validate=validate, aliases=("anylines",), max_new_tokens=24))

@synesthesia.hookimpl
def register_renderers(register):
    register(Renderer(name="shout", description="upper case", options=ShoutOptions, render=shout))
    register(Renderer(name="explode", description="fails on demand", options=ExplodeOptions, render=explode))

@synesthesia.hookimpl
def artwork_created(artwork):
    log = os.environ.get("TEST_ARTWORK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": str(artwork.path), "revision": artwork.manifest["revision"]}) + "\\n")
"""


@pytest.fixture
def env_with_plugin(plugin_dir, tmp_path):
    folder, env = plugin_dir
    make_plugin_dist(folder, "pipeline_test_plugin", TEST_PLUGIN)
    log = tmp_path / "artworks.jsonl"
    return {**env, "TEST_ARTWORK_LOG": str(log),
            "SYNESTHESIA_PLUGINS": "transformer,pipeline_test_plugin"}, log


def _run(env, run_dir: Path, checkpoint: Path, *overrides: str):
    return run_cli("run", f"hydra.run.dir={run_dir}", f"model.name={checkpoint}", "form=lines",
                   "generation.candidates=2", "generation.max_attempts=1", *overrides, env=env)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_writes_text_renderer_files_and_a_complete_manifest(env_with_plugin, tiny_checkpoint, tmp_path):
    env, log = env_with_plugin
    run_dir = tmp_path / "run"
    result = _run(env, run_dir, tiny_checkpoint, "theme=sea moon", "seed=7", "renderer.shout.suffix=?")
    assert result.returncode == 0, result.stderr
    artwork = run_dir / "artwork"
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    text = (artwork / "text.txt").read_text(encoding="utf-8").strip("\n")
    assert text and manifest["text"] == text
    assert (artwork / "shout" / "shout.txt").read_text(encoding="utf-8") == text.upper() + "?"
    assert manifest["seed"] == 7 and manifest["intent"]["theme"] == "sea moon"
    assert manifest["model"]["sha256"] == _sha(Path(tiny_checkpoint) / "model.safetensors")
    assert manifest["config"]["renderer"]["shout"]["suffix"] == "?"
    assert {p["name"] for p in manifest["plugins"]} == {"transformer", "pipeline_test_plugin"}
    assert set(manifest["files"]) == {"text.txt", "shout/shout.txt", "explode/partial.txt"}
    for relative, digest in manifest["files"].items():
        assert _sha(artwork / relative) == digest
    assert len(manifest["candidates"]) == 2 and manifest["reproduce"].startswith("synesthesia run form=lines")
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".artwork")], "staging left behind"
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert events == [{"path": str(artwork), "revision": 1}]


@pytest.mark.slow
def test_same_seed_same_text_and_the_form_alias_works(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    texts = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = _run(env, tmp_path / name, tiny_checkpoint, f"seed={seed}", "form=anylines", "model.dtype=int8")
        assert result.returncode == 0, result.stderr
        texts.append((tmp_path / name / "artwork" / "text.txt").read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    manifest = json.loads((tmp_path / "a" / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["inference_dtype"] == "int8"


@pytest.mark.slow
def test_bad_values_fail_before_any_work_with_a_clear_message(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    run_dir = tmp_path / "bad"
    cases = [
        (("renderer.shout.repeat=9",), "renderer.shout.repeat"),
        (("form=nosuchform",), "unknown form 'nosuchform'"),
        (("pipeline.renderers=[nosuch]",), "unknown renderer 'nosuch'"),
        (("generation.temperature=warm",), "generation.temperature"),
        (("colour=blue",), "unknown setting 'colour'"),
        (("model.dtype=half",), "model.dtype must be float32, bfloat16 or int8"),
    ]
    for overrides, message in cases:
        result = _run(env, run_dir, tiny_checkpoint, *overrides)
        assert result.returncode != 0, overrides
        assert message in result.stderr, (overrides, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (run_dir / "artwork").exists()
    missing = _run(env, run_dir, tmp_path / "no-such-model")
    assert missing.returncode == 1 and "no model checkpoint named" in missing.stderr


def test_a_plugin_renderers_options_are_strict_and_a_rejected_run_leaves_no_folder(env_with_plugin, tiny_checkpoint,
                                                                                   tmp_path):
    """ShoutOptions does not forbid extra fields; the framework still rejects a misspelt option, in one line
    that lists the renderer's options with their defaults, and the rejected run leaves no folder behind."""
    env, _ = env_with_plugin
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("run", f"model.name={tiny_checkpoint}", "form=lines", "renderer.shout.sufix=?",
                     env=env, cwd=work)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "renderer 'shout' has no option 'sufix' (did you mean 'suffix'?)" in result.stderr
    assert 'suffix="!", repeat=1' in result.stderr
    assert list(work.iterdir()) == [], "no outputs/DATE/TIME/.hydra or app.log left"


def test_a_good_runs_app_log_records_the_run(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    result = _run(env, tmp_path / "run", tiny_checkpoint, "theme=sea")
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "run" / "app.log").read_text(encoding="utf-8")
    assert "run: form=lines theme='sea' seed=0" in log
    assert f"artwork: {tmp_path / 'run' / 'artwork'}" in log and "timings" in log
    assert "[synesthesia.run]" not in result.stdout + result.stderr, "each message shown once, not via Hydra's console"


@pytest.mark.slow
def test_model_compile_writes_the_same_text_and_the_manifest_says_so(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    manifests = {}
    for compiled in ("false", "true"):
        run_dir = tmp_path / f"compile-{compiled}"
        result = _run(env, run_dir, tiny_checkpoint, "theme=sea moon", "seed=3", f"model.compile={compiled}")
        assert result.returncode == 0, result.stderr
        manifests[compiled] = json.loads((run_dir / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    assert manifests["false"]["model"]["compiled"] is False and manifests["true"]["model"]["compiled"] is True
    assert manifests["true"]["text"] == manifests["false"]["text"]


@pytest.mark.slow
def test_edit_then_render_keeps_the_previous_revision(env_with_plugin, tiny_checkpoint, tmp_path):
    env, log = env_with_plugin
    run_dir = tmp_path / "edit"
    assert _run(env, run_dir, tiny_checkpoint).returncode == 0
    artwork = run_dir / "artwork"
    original = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))["text"]
    (artwork / "text.txt").write_text("the artist wrote this line\nand this one\n", encoding="utf-8")
    result = run_cli("render", str(run_dir), env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["revision"] == 2 and manifest["text"] == "the artist wrote this line\nand this one"
    assert [r["source"] for r in manifest["revisions"]] == ["model", "edit"]
    assert (artwork / "shout" / "shout.txt").read_text(encoding="utf-8").startswith("THE ARTIST WROTE")
    kept = run_dir / "revisions" / "rev-001"
    assert (kept / "text.txt").read_text(encoding="utf-8").strip("\n") == original
    assert json.loads((kept / "manifest.json").read_text(encoding="utf-8"))["revision"] == 1
    for relative, digest in manifest["files"].items():
        assert _sha(artwork / relative) == digest
    again = run_cli("render", str(run_dir), env=env)
    assert again.returncode == 0 and "unchanged" in again.stderr
    assert len(log.read_text(encoding="utf-8").splitlines()) == 2
    assert run_cli("render", str(tmp_path / "nothing-here"), env=env).returncode == 1


@pytest.mark.slow
def test_a_failing_renderer_is_recorded_or_fatal_but_never_half_written(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    tolerant = tmp_path / "tolerant"
    result = _run(env, tolerant, tiny_checkpoint, "renderer.explode.explode=true")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tolerant / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    assert "kaboom" in manifest["renderers"]["explode"]["error"]
    assert manifest["renderers"]["shout"]["error"] is None and (tolerant / "artwork" / "shout" / "shout.txt").exists()

    strict = tmp_path / "strict"
    result = _run(env, strict, tiny_checkpoint, "renderer.explode.explode=true", "pipeline.fail_on_renderer_error=true")
    assert result.returncode == 1 and "kaboom" in result.stderr
    assert not strict.exists(), "a failed run leaves no folder (no half artwork, no empty .hydra/ and app.log)"


@pytest.mark.slow
def test_multirun_sweep_with_the_joblib_launcher(env_with_plugin, tiny_checkpoint, tmp_path):
    env, _ = env_with_plugin
    sweep = tmp_path / "sweep"
    result = run_cli("run", "-m", f"hydra.sweep.dir={sweep}", f"model.name={tiny_checkpoint}", "form=lines",
                     "generation.candidates=1", "generation.max_attempts=1", "theme=autumn,sea", "seed=1,2",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", env=env)
    assert result.returncode == 0, result.stderr
    manifests = sorted(sweep.glob("*/artwork/manifest.json"))
    assert len(manifests) == 4
    combos = {(m["intent"]["theme"], m["seed"]) for m in (json.loads(p.read_text(encoding="utf-8")) for p in manifests)}
    assert combos == {("autumn", 1), ("autumn", 2), ("sea", 1), ("sea", 2)}


@pytest.mark.slow
def test_generate_streams_one_text_and_reports_the_form_verdict(env_with_plugin, tiny_checkpoint):
    env, _ = env_with_plugin
    first = run_cli("generate", "sea", "--form", "lines", "--model", str(tiny_checkpoint), "--seed", "5",
                    "--max-tokens", "20", env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli("generate", "sea", "--form", "lines", "--model", str(tiny_checkpoint), "--seed", "5",
                    "--max-tokens", "20", env=env)
    assert first.stdout == again.stdout and first.stdout.strip()
    assert "[lines]" in first.stderr and "the form" in first.stderr
    unknown = run_cli("generate", "sea", "--form", "villanelle", "--model", str(tiny_checkpoint), env=env)
    assert unknown.returncode == 1 and "unknown form 'villanelle'" in unknown.stderr


@pytest.mark.slow
def test_english_theme_words_become_the_chinese_models_keywords(tmp_path):
    run_dir = tmp_path / "zh"
    result = run_cli("run", f"hydra.run.dir={run_dir}", "form=七绝", "theme=autumn moon", "model.name=tang",
                     "pipeline.renderers=[poem_text]", "generation.candidates=2",
                     env={"SYNESTHESIA_PLUGINS": "transformer,poetry"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    mapping = manifest["model"]["theme_mapping"]
    assert mapping["keywords"] == ["秋", "月"] and mapping["unknown"] == []
    lines = [line for line in manifest["text"].splitlines() if line.strip()]
    assert manifest["validation"]["ok"] and len("".join(lines)) >= 28


@pytest.mark.slow
def test_validators_see_the_request_at_run_and_after_an_edit(tmp_path):
    run_dir = tmp_path / "cangtou"
    env = {"SYNESTHESIA_PLUGINS": "transformer,poetry"}
    result = run_cli("run", f"hydra.run.dir={run_dir}", "form=藏头诗", "form_options.head=春夏秋冬",
                     "pipeline.renderers=[poem_text]", "generation.candidates=2", env=env)
    assert result.returncode == 0, result.stderr
    artwork = run_dir / "artwork"
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    lines = [line for line in manifest["text"].replace("，", "\n").replace("。", "\n").splitlines() if line.strip()]
    assert [line[0] for line in lines] == list("春夏秋冬") and manifest["validation"]["ok"]
    # The artist swaps the first character: the text no longer carries the requested heads.
    (artwork / "text.txt").write_text("夏" + manifest["text"][1:], encoding="utf-8")
    rendered = run_cli("render", str(run_dir), env=env)
    assert rendered.returncode == 0
    revised = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    assert revised["revision"] == 2 and not revised["validation"]["ok"]
    # ...and the artist is told so in one line, not only in the manifest.
    warnings = [line for line in rendered.stderr.splitlines() if "does not obey form '藏头诗'" in line]
    assert len(warnings) == 1, rendered.stderr


@pytest.mark.slow
def test_the_manifest_says_how_the_theme_was_understood_and_placed(tmp_path):
    run_dir = tmp_path / "theme"
    result = run_cli("run", f"hydra.run.dir={run_dir}", "form=七绝", "theme=江雪", "model.name=tang",
                     "pipeline.renderers=[poem_text]", "generation.candidates=4",
                     env={"SYNESTHESIA_PLUGINS": "transformer,poetry"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    theme = manifest["theme"]
    assert theme["words"] == ["江", "雪"] and theme["keywords"][0] == "江雪"  # the theme word whole, first
    assert theme["sources"]["江"] == "theme" and theme["sources"][theme["keywords"][1]] == "imagery"
    lines = [line for line in manifest["text"].replace("，", "\n").replace("。", "\n").splitlines() if line.strip()]
    assert [p["line"] for p in theme["plan"]] == [0, 1, 2, 3]
    for entry in theme["plan"]:  # every planned keyword landed in its own line
        assert entry["keyword"] in lines[entry["line"]], (entry, lines)
    chosen = [c for c in manifest["candidates"] if c["text"] == manifest["text"]][0]
    assert chosen["coverage"] > 0 and chosen["loglik"] < 0 and {"filler", "repetition", "quality"} <= set(chosen)


@pytest.mark.slow
def test_render_says_the_edit_breaks_the_form_and_its_path_is_absolute(tmp_path):
    """Relative folders in, absolute artwork paths out (run and render alike); an edit that breaks the form is
    named on the terminal (how many problems, the first ones), and the page credits the hand, not the model."""
    result = run_cli("run", "hydra.run.dir=run", "form=五绝", "theme=秋", "model.name=tang", "generation.candidates=1",
                     "generation.max_attempts=1", "pipeline.renderers=[poem_svg]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"artwork: {tmp_path / 'run' / 'artwork'}"
    (tmp_path / "run" / "artwork" / "text.txt").write_text("the artist's own words\nin English\n", encoding="utf-8")
    rendered = run_cli("render", "run", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    manifest = json.loads((tmp_path / "run" / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    problems = manifest["validation"]["problems"]
    assert manifest["validation"]["ok"] is False and len(problems) > 3
    [warning] = [line for line in rendered.stderr.splitlines() if line.startswith("warning:")]
    assert f"does not obey form '五绝' ({len(problems)} problems): {problems[0]}" in warning
    assert f"and {len(problems) - 3} more" in warning and "validation.problems" in warning
    assert rendered.stdout.strip() == (f"revision 2: {tmp_path / 'run' / 'artwork'} (does not obey its form: "
                                       f"{len(problems)} problem(s), see above)")
    svg = (tmp_path / "run" / "artwork" / "poem_svg" / "poem.svg").read_text(encoding="utf-8")
    assert "edited by hand (revision 2) · first draft: Synesthesia · tang" in svg


@pytest.mark.parametrize("theme", ["a lighthouse keeper's last night", 'rain, "quiet" [storm] {x} (a=b)',
                                   "${oc.env:HOME} \\${x} back\\slash'", "秋月, 江雪 ─ «夜»"])
def test_any_theme_title_or_prompt_a_person_types_runs_as_typed(env_with_plugin, tiny_checkpoint, tmp_path, theme):
    env, _ = env_with_plugin
    result = _run(env, tmp_path / "run", tiny_checkpoint, f"theme={theme}", f"title={theme}", f"prompt={theme}")
    assert result.returncode == 0, result.stderr
    intent = json.loads((tmp_path / "run" / "artwork" / "manifest.json").read_text(encoding="utf-8"))["intent"]
    assert intent["theme"] == intent["title"] == intent["prompt"] == theme


@pytest.mark.slow
def test_a_theme_word_the_model_has_no_keyword_for_is_noted_once_not_once_per_round(tmp_path):
    result = run_cli("run", f"hydra.run.dir={tmp_path / 'run'}", "form=sonnet", "theme=river zzqx", "model.name=verse",
                     "generation.candidates=1", "generation.max_attempts=3", "generation.constrained=false",
                     "generation.max_new_tokens=20", "pipeline.renderers=[poem_text]")
    assert result.returncode == 0, result.stderr
    assert "after 3 round(s)" in result.stderr, "three rounds of candidates were decoded"
    assert result.stderr.count("knows no keyword for: zzqx") == 1, result.stderr
