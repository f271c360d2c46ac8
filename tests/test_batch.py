"""`synesthesia batch`: intents through Hydra's launchers, resumable, with an index that names every failure;
sweeps (`run -m`) with a progress bar and models loaded once per worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import model_loads, run_cli, save_tiny_checkpoint

pytestmark = pytest.mark.slow
FAST = ["generation.candidates=1", "generation.max_attempts=1", "pipeline.renderers=[poem_text]"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small real checkpoint that writes free verse (random weights: fast, and any text is 'free')."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", forms=("free",))


def _index(out: Path) -> dict[int, dict]:
    return {row["line"]: row for row in map(json.loads, (out / "index.jsonl").read_text(encoding="utf-8").splitlines())}


def test_a_batch_makes_every_intent_names_failures_and_resumes(tiny_checkpoint, tmp_path):
    intents = tmp_path / "intents.jsonl"
    lines = [
        '{"form": "free", "theme": "winter sea", "seed": 1}',
        '{"form": "free", "theme": "a keeper\'s last night, [storm]", "seed": 2}',
        "{not json",
        '{"form": "villanelle", "theme": "x"}',  # planned in the job: a reported failure, the rest go on
        '{"form": "free", "thme": "typo"}',
        '{"form": "free", "options": {"generation.temprature": 2}}',
        '{"id": "home", "form": "free", "theme": "${oc.env:HOME}", "options": {"generation.top_k": 5}}',
    ]
    intents.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "batch"
    args = ["batch", str(intents), "--out", str(out), f"model.name={tiny_checkpoint}", *FAST]
    first = run_cli(*args)
    assert first.returncode == 1, first.stderr
    assert f"{intents}:3: not JSON" in first.stderr and f"{intents}:5: thme: unknown field" in first.stderr
    assert "5/5" in first.stderr and "failed=2" in first.stderr, "a progress bar over the 5 jobs"
    rows = _index(out)
    assert [rows[n]["status"] for n in range(1, 8)] == ["ok", "ok", "bad line", "failed", "bad line", "failed", "ok"]
    assert "unknown form 'villanelle'" in rows[4]["error"]
    assert "unknown setting 'generation.temprature'" in rows[6]["error"]
    assert (out / "index.csv").read_text(encoding="utf-8").count("\n") == 8
    manifests = {n: json.loads((Path(rows[n]["artwork"]) / "manifest.json").read_text(encoding="utf-8"))
                 for n in (1, 2, 7)}
    assert manifests[2]["intent"]["theme"] == "a keeper's last night, [storm]" and manifests[2]["seed"] == 2
    assert manifests[7]["intent"]["theme"] == "${oc.env:HOME}", "a user's ${…} is text, never interpolated"
    assert manifests[7]["generation"]["top_k"] == 5 and rows[7]["key"] == "home"
    loads = [m["timings"]["load_model"] for m in manifests.values()]
    assert sum(t >= 0.05 for t in loads) == 1, f"the model is loaded once for the batch, not per artwork: {loads}"

    # Fixed lines run; made artworks are found by their manifests and kept as they are.
    made = {n: (Path(rows[n]["artwork"]) / "manifest.json").stat().st_mtime_ns for n in (1, 2, 7)}
    lines[3] = '{"form": "free", "theme": "villanelle no more"}'
    lines[5] = '{"form": "free", "options": {"generation.temperature": 0.5}}'
    intents.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = run_cli(*args)
    assert "3 of 5 artworks already in" in second.stderr and "2/2" in second.stderr, second.stderr
    rows = _index(out)
    assert [rows[n]["status"] for n in range(1, 8)] == ["ok", "ok", "bad line", "ok", "bad line", "ok", "ok"]
    assert [rows[n]["new"] for n in (1, 2, 4, 6, 7)] == [False, False, True, True, False]
    assert made == {n: (Path(rows[n]["artwork"]) / "manifest.json").stat().st_mtime_ns for n in (1, 2, 7)}
    assert second.returncode == 1 and "2 of 7 lines made no artwork" in second.stderr  # the two bad lines

    missing = run_cli("batch", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0 and "no such file" in missing.stderr
    (tmp_path / "empty.jsonl").write_text("# nothing yet\n\n", encoding="utf-8")
    empty = run_cli("batch", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "empty"))
    assert empty.returncode == 1 and empty.stderr.strip().count("\n") == 0 and "holds no intent" in empty.stderr


def test_a_sweep_shows_progress_and_its_joblib_workers_load_the_model_once(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("run", "-m", f"hydra.sweep.dir={sweep}", "form=haiku", "theme=winter sea", "seed=1,2,3,4",
                     "model.name=verse", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr
    assert "4/4" in result.stderr, result.stderr
    manifests = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(sweep.glob("*/artwork/manifest.json"))]
    assert sorted(m["seed"] for m in manifests) == [1, 2, 3, 4]
    loads = [m["timings"]["load_model"] for m in manifests]
    assert model_loads(loads) <= 2, f"2 workers load the model once each, not once per job: {loads}"
