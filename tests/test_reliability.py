"""Never lose the artist's work: runs into an existing artwork, damaged artworks, leftovers of killed
processes, two writers at once, and bad sampling values before any work (issue: reliability)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synesthesia.errors import SynesthesiaError
from synesthesia.pipeline import RunLock, remove_stale_staging
from tests.conftest import run_cli

ENV = {"SYNESTHESIA_PLUGINS": "transformer,poetry"}
FAST = ["form=五绝", "theme=江雪", "model.name=tang", "pipeline.renderers=[poem_text]", "generation.candidates=2"]


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "artwork" / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_a_run_into_a_revised_artwork_keeps_it_whole(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("run", f"hydra.run.dir={run_dir}", *FAST, env=ENV).returncode == 0
    edited = "孤舟蓑笠翁，獨釣寒江雪。\n千山鳥飛絕，萬徑人蹤滅。\n"
    (run_dir / "artwork" / "text.txt").write_text(edited, encoding="utf-8")
    assert run_cli("render", str(run_dir), env=ENV).returncode == 0
    assert _manifest(run_dir)["revision"] == 2
    # A second edit, not yet rendered, must survive too.
    unrendered = edited.replace("孤舟", "扁舟")
    (run_dir / "artwork" / "text.txt").write_text(unrendered, encoding="utf-8")

    again = run_cli("run", f"hydra.run.dir={run_dir}", *FAST[:1], "theme=边塞", *FAST[2:], env=ENV)
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "already held an artwork" in line]
    assert len(notes) == 1 and "rev-002" in notes[0], again.stderr
    kept = run_dir / "revisions" / "rev-002"
    assert (kept / "text.txt").read_text(encoding="utf-8") == unrendered  # the artist's words, untouched
    assert json.loads((kept / "manifest.json").read_text(encoding="utf-8"))["text"].startswith("孤舟蓑笠翁")
    assert (run_dir / "revisions" / "rev-001" / "text.txt").is_file()
    new = _manifest(run_dir)
    assert new["revision"] == 3 and new["intent"]["theme"] == "边塞"
    assert [r["revision"] for r in new["revisions"]] == [1, 2, 3]
    assert new["revisions"][-1]["previous"] == "revisions/rev-002"


@pytest.mark.slow
def test_render_of_damaged_artworks_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("run", f"hydra.run.dir={run_dir}", *FAST, env=ENV).returncode == 0
    artwork = run_dir / "artwork"
    (artwork / "text.txt").write_bytes(b"\xff\xfe\x00binary\x80")
    result = run_cli("render", str(run_dir), env=ENV)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"Error: {artwork / 'text.txt'} is not UTF-8 text; save it as UTF-8 and render again"]
    (artwork / "text.txt").write_text("江雪\n", encoding="utf-8")
    (artwork / "manifest.json").write_text("[]", encoding="utf-8")
    result = run_cli("render", str(run_dir), env=ENV)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "is not an artwork manifest" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_leftovers_of_killed_processes_are_removed_but_a_live_ones_are_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".artwork-staging-{dead.pid}-123"
    stale_rev = tmp_path / "revisions" / f".rev-002-staging-{dead.pid}"
    live = tmp_path / f".artwork-staging-{os.getpid()}-456"
    for folder in (stale, stale_rev, live):
        folder.mkdir(parents=True)
        (folder / "text.txt").write_text("x", encoding="utf-8")
    removed = remove_stale_staging(tmp_path)
    assert set(removed) == {stale, stale_rev} and not stale.exists() and live.is_dir()


def test_two_writers_never_share_a_run_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from synesthesia.pipeline import RunLock\n"
         f"with RunLock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SynesthesiaError, match="another synesthesia process is writing"):
            with RunLock(tmp_path):
                pass
        started = time.perf_counter()
        result = run_cli("run", f"hydra.run.dir={tmp_path}", *FAST, env=ENV)
        assert result.returncode == 1 and "another synesthesia process is writing" in result.stderr
        assert not (tmp_path / "artwork").exists() and time.perf_counter() - started < 60
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # free again once the holder is gone, even killed
        pass


def test_bad_sampling_values_fail_before_the_model_loads(tmp_path):
    from synesthesia.errors import ConfigError
    from synesthesia.pipeline import plan

    with pytest.raises(ConfigError, match="generation.top_p"):
        plan({"form": "五绝", "model": {"name": "tang"}, "generation": {"top_p": 3.0}})
    with pytest.raises(ConfigError, match="generation.repetition_penalty"):
        plan({"form": "五绝", "model": {"name": "tang"}, "generation": {"repetition_penalty": 0}})


@pytest.mark.slow
def test_any_theme_a_person_types_works_and_is_never_interpolated(tmp_path):
    run_dir = tmp_path / "quoted"
    theme = "a lighthouse keeper's [last] night ${oc.env:NOPE_NOT_SET} ${oc.env:HOME}"
    result = run_cli("run", f"hydra.run.dir={run_dir}", "form=haiku", f"theme={theme}", "model.name=verse",
                     "pipeline.renderers=[poem_text]", "generation.candidates=2", env=ENV)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    manifest = _manifest(run_dir)
    # Nothing was resolved: the artist's text, as typed.
    assert manifest["intent"]["theme"] == theme and manifest["config"]["theme"] == theme
    assert os.environ.get("HOME", "/root") not in json.dumps(manifest["intent"])
    assert "${oc.env:HOME}" in manifest["theme"]["unknown"] and "lighthouse" in manifest["theme"]["words"]


@pytest.mark.slow
def test_a_comma_in_a_single_runs_theme_is_text_and_a_sweep_still_sweeps(tmp_path):
    run_dir = tmp_path / "comma"
    result = run_cli("run", f"hydra.run.dir={run_dir}", *FAST[:1], "theme=江雪,孤舟", *FAST[2:], env=ENV)
    assert result.returncode == 0, result.stderr
    assert _manifest(run_dir)["intent"]["theme"] == "江雪,孤舟"
    sweep = run_cli("run", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *FAST[:1], "theme=江雪,孤舟", *FAST[2:],
                    env=ENV)
    assert sweep.returncode == 0, sweep.stderr
    themes = sorted(json.loads(p.read_text(encoding="utf-8"))["intent"]["theme"]
                    for p in (tmp_path / "sweep").glob("*/artwork/manifest.json"))
    assert themes == ["孤舟", "江雪"]


@pytest.mark.parametrize("override,message", [
    ("model.device=banana", "model.device must be cpu, cuda, cuda:N or mps, not 'banana'"),
    ("generation.candidates=100000", "generation.candidates ≤ 256"),
])
def test_impossible_settings_are_one_line_before_any_work(tmp_path, override, message):
    result = run_cli("run", f"hydra.run.dir={tmp_path / 'r'}", *FAST, override, env=ENV)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("run", f"hydra.run.dir={tmp_path / 'r'}", *FAST, "model.device=cuda", env=ENV)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Error: model.device=cuda: this machine has no CUDA device; use model.device=cpu"


def test_a_checkpoint_with_a_damaged_format_version_is_one_line(tmp_path):
    import shutil

    from synesthesia.checkpoint import load_checkpoint
    from synesthesia.errors import CheckpointError

    folder = tmp_path / "ckpt"
    shipped = Path(__file__).resolve().parents[1] / "plugins" / "synesthesia_transformer" / "checkpoints"
    shutil.copytree(shipped / "tang", folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["format_version"] = "1"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError, match="format_version must be a whole number"):
        load_checkpoint(folder)


@pytest.mark.slow
def test_control_characters_and_huge_texts_in_render(tmp_path):
    import xml.etree.ElementTree as ET

    run_dir = tmp_path / "run"
    env = {"SYNESTHESIA_PLUGINS": "transformer,poetry"}
    assert run_cli("run", f"hydra.run.dir={run_dir}", *FAST[:3], "pipeline.renderers=[poem_svg]",
                   "generation.candidates=2", "title=題\x1b[31m", env=env).returncode == 0
    artwork = run_dir / "artwork"
    (artwork / "text.txt").write_text("孤舟蓑\x00笠翁，獨釣\x1b寒江雪。\n千山鳥飛絕，萬徑人蹤滅。\n", encoding="utf-8")
    result = run_cli("render", str(run_dir), env=env)
    assert result.returncode == 0, result.stderr
    for svg in (artwork / "poem_svg").glob("*.svg"):
        ET.parse(svg)  # well-formed XML whatever the text held
    (artwork / "text.txt").write_text("月" * 1_000_000, encoding="utf-8")
    started = time.perf_counter()
    result = run_cli("render", str(run_dir), env=env)
    assert result.returncode == 1 and "at most 20,000" in result.stderr and time.perf_counter() - started < 60
    assert not list(run_dir.glob(".artwork-staging-*"))


def test_a_synthesizer_dies_with_its_parent():
    from synesthesia_midi.audio import _die_with_parent  # noqa: F401 - the hook fluidsynth runs under

    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "from synesthesia_midi.audio import _die_with_parent\n"
         "child = subprocess.Popen(['sleep', '60'], preexec_fn=_die_with_parent)\n"
         "print(child.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()  # kill -9
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child_pid, 0)
            with open(f"/proc/{child_pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the child outlived its killed parent")


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KB tmpfs (root only): a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_loses_nothing(small_disk):
    run_dir = small_disk / "run"
    assert run_cli("run", f"hydra.run.dir={run_dir}", *FAST, env=ENV).returncode == 0
    before = (run_dir / "artwork" / "text.txt").read_bytes()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - 48 * 1024))  # room for Hydra's files, not a PNG
    result = run_cli("run", f"hydra.run.dir={run_dir}", *FAST[:3], "pipeline.renderers=[poem_text,poem_png]",
                     "generation.candidates=2", env=ENV)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no space left on the device; nothing was lost" in result.stderr
    assert (run_dir / "artwork" / "text.txt").read_bytes() == before
    assert not list(run_dir.glob(".artwork-*"))


@pytest.mark.slow
def test_render_in_an_immutable_folder_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("run", f"hydra.run.dir={run_dir}", *FAST, env=ENV).returncode == 0
    edited = "孤舟蓑笠翁，獨釣寒江雪。\n千山鳥飛絕，萬徑人蹤滅。\n"
    (run_dir / "artwork" / "text.txt").write_text(edited, encoding="utf-8")
    if subprocess.run(["chattr", "+i", str(run_dir)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        result = run_cli("render", str(run_dir), env=ENV)
    finally:
        subprocess.run(["chattr", "-i", str(run_dir)], capture_output=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "nothing was lost" in result.stderr


def test_a_theme_that_is_not_text_is_one_line(tmp_path):
    from synesthesia.errors import ConfigError
    from synesthesia.pipeline import plan

    with pytest.raises(ConfigError, match="theme holds bytes that are not text"):
        plan({"form": "五绝", "theme": "秋\udcff月", "model": {"name": "tang"}})


@pytest.mark.parametrize("override,line", [
    ("foo=1", "Error: unknown setting 'foo'; `synesthesia run --cfg job` lists the settings"),
    ("generation.temperature=hot", "Error: generation.temperature: 'hot' is not a valid float"),
])
def test_hydra_rejections_are_one_line(tmp_path, override, line):
    result = run_cli("run", f"hydra.run.dir={tmp_path / 'r'}", override, env=ENV)
    assert result.returncode == 1 and result.stderr.strip() == line, result.stderr


def test_an_immutable_run_folder_is_one_line(tmp_path):
    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    if subprocess.run(["chattr", "+i", str(run_dir)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        inside = run_cli("run", f"hydra.run.dir={run_dir}", *FAST, env=ENV)
        below = run_cli("run", f"hydra.run.dir={run_dir / 'sub'}", *FAST, env=ENV)
    finally:
        subprocess.run(["chattr", "-i", str(run_dir)], capture_output=True)
    for result in (inside, below):
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "cannot write the run folder" in result.stderr


def test_an_impossible_context_length_is_refused_before_training(tmp_path):
    corpus = tmp_path / "poems.txt"
    corpus.write_text("床前明月光，疑是地上霜。\n" * 50, encoding="utf-8")
    started = time.perf_counter()
    result = run_cli("train", f"data.paths=[{corpus}]", f"out_dir={tmp_path / 'run'}", "train=tiny",
                     "model.block_size=100000")
    assert result.returncode == 1 and time.perf_counter() - started < 60
    assert "model.block_size must be at most 8192" in result.stderr and "Traceback" not in result.stderr


def test_corpus_prepare_into_an_unwritable_folder_is_one_line(tmp_path):
    source = tmp_path / "poems.txt"
    source.write_text("床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n" * 20, encoding="utf-8")
    out = tmp_path / "locked"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        result = run_cli("corpus", "prepare", str(source), "--out", str(out / "corpus"))
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot write" in result.stderr, result.stderr


@pytest.mark.slow
def test_an_emoji_no_font_draws_is_left_out_not_the_layout(tmp_path):
    from PIL import Image

    from synesthesia_poetry.fonts import unrenderable

    if not unrenderable("🌙"):
        pytest.skip("an emoji font is installed here: nothing to leave out")
    run_dir = tmp_path / "emoji"
    result = run_cli("run", f"hydra.run.dir={run_dir}", *FAST[:3], "title=江雪 🌙",
                     "pipeline.renderers=[poem_png,poem_svg]", "generation.candidates=2", env=ENV)
    assert result.returncode == 0 and "failed" not in result.stderr, result.stderr
    assert "no installed font draws '🌙'; left out of the page" in result.stderr
    manifest = _manifest(run_dir)
    assert manifest["renderers"]["poem_png"]["error"] is None and manifest["renderers"]["poem_svg"]["error"] is None
    assert Image.open(run_dir / "artwork" / "poem_png" / "poem.png").size[0] > 100


def _artwork_is_whole(artwork: Path) -> bool:
    """Every file the manifest lists is there with its recorded sha256."""
    import hashlib

    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    return all(hashlib.sha256((artwork / name).read_bytes()).hexdigest() == digest
               for name, digest in manifest["files"].items())


@pytest.mark.slow
def test_kill_9_at_any_moment_never_leaves_half_an_artwork(tmp_path):
    import random

    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "synesthesia", "run", f"hydra.run.dir={run_dir}", *FAST[:3],
            "pipeline.renderers=[poem_text,poem_svg,poem_png]", "generation.candidates=2"]
    env = {**os.environ, **ENV}
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0
    rng = random.Random(17)
    for trial in range(4):  # start-up, generation, rendering, publishing: a random moment of each run
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 5.0))
        process.kill()
        process.wait()
        assert _artwork_is_whole(run_dir / "artwork"), f"trial {trial}: half an artwork is visible"
        for kept in (run_dir / "revisions").glob("rev-*"):
            assert (kept / "manifest.json").is_file(), f"trial {trial}: half a kept revision {kept.name}"
    # The next run cleans what the killed ones left and still keeps every earlier artwork.
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0
    assert not list(run_dir.glob(".artwork-*")) and _artwork_is_whole(run_dir / "artwork")


@pytest.mark.slow
def test_training_onto_a_full_disk_is_one_line(small_disk, tmp_path):
    corpus = tmp_path / "poems.txt"
    corpus.write_text("床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n" * 200, encoding="utf-8")
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - 8 * 1024))
    result = run_cli("train", f"data.paths=[{corpus}]", f"out_dir={small_disk / 'run'}", "train=tiny",
                     "optim.max_iters=2", "eval_interval=1", "checkpoint_interval=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "No space left on device" in result.stderr or "no space left" in result.stderr.lower()
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error")]) == 1


def test_evaluate_on_a_binary_heldout_file_is_one_line(tmp_path):
    binary = tmp_path / "heldout.bin"
    binary.write_bytes(b"\xff\xfe\x80\x81" * 100)
    result = run_cli("evaluate", "--model", "tang", "--heldout", str(binary))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error:") and len(result.stderr.strip().splitlines()) == 1
