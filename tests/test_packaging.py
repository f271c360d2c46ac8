"""Packaging: the wheel carries configs and plugins and runs a pipeline outside the checkout; the example
third-party plugin installs with pip and takes part in a pipeline, config group included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, make_plugin_dist, run_cli
from tests.test_pipeline import TEST_PLUGIN

EXAMPLE = REPO / "examples" / "synesthesia-example-plugin"


def _pip(*args: str, python: str = sys.executable) -> None:
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
                   check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, text=True)
    (path,) = out.glob("synesthesia-*.whl")
    return path


def test_wheel_carries_configs_and_builtin_plugins(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "synesthesia/conf/config.yaml" in names
    assert "synesthesia/conf/generation/default.yaml" in names
    assert "synesthesia_transformer/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[synesthesia]" in text and "transformer = synesthesia_transformer" in text
    assert "[console_scripts]" in text and "synesthesia = synesthesia.cli:main" in text


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_a_pipeline_outside_the_checkout(wheel, tiny_checkpoint, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # Dependencies (torch, hydra, ...) come from this environment; the package itself only from the wheel.
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    plugins = tmp_path / "plugins"
    make_plugin_dist(plugins, "pipeline_test_plugin", TEST_PLUGIN)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(plugins), "SYNESTHESIA_PLUGINS": "transformer,pipeline_test_plugin"}
    where = subprocess.run([python, "-c", "import synesthesia, synesthesia.conf; print(synesthesia.__file__)"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    result = subprocess.run(
        [str(venv / "bin" / "synesthesia"), "run", "hydra.run.dir=run", f"model.name={tiny_checkpoint}",
         "form=lines", "generation.candidates=1", "generation.max_attempts=1", "pipeline=default"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((outside / "run" / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["text"] and "shout/shout.txt" in manifest["files"]


@pytest.mark.slow
def test_example_plugin_installs_with_pip_and_joins_a_pipeline(tiny_checkpoint, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, capture_output=True, text=True)
    make_plugin_dist(target, "pipeline_test_plugin", TEST_PLUGIN)
    env = {"PYTHONPATH": str(target), "SYNESTHESIA_PLUGINS": "transformer,pipeline_test_plugin,example"}
    listing = json.loads(run_cli("plugins", "--json", env=env).stdout)
    example = next(p for p in listing["plugins"] if p["name"] == "example")
    assert example["version"] == "0.2.0" and example["renderers"] == ["word_stats"]
    run_dir = tmp_path / "run"
    # pipeline=word_stats is a config group that only the plugin ships.
    result = run_cli("run", f"hydra.run.dir={run_dir}", f"model.name={tiny_checkpoint}", "form=lines",
                     "generation.candidates=1", "generation.max_attempts=1", "pipeline=word_stats",
                     "renderer.word_stats.top=3", env=env)
    assert result.returncode == 0, result.stderr
    artwork = run_dir / "artwork"
    stats = json.loads((artwork / "word_stats" / "stats.json").read_text(encoding="utf-8"))
    text = (artwork / "text.txt").read_text(encoding="utf-8")
    assert stats["lines"] == len([line for line in text.splitlines() if line.strip()])
    assert len(stats["top"]) <= 3
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    assert list(manifest["renderers"]) == ["word_stats"]
    bad = run_cli("run", f"hydra.run.dir={tmp_path / 'bad'}", f"model.name={tiny_checkpoint}", "form=lines",
                  "pipeline=word_stats", "renderer.word_stats.top=0", env=env)
    assert bad.returncode == 1 and "renderer.word_stats.top" in bad.stderr
