"""`synesthesia batch ... hydra/launcher=submitit_local`: the Slurm launcher's local twin (each job a process of
its own, as on a Slurm node) makes every intent and indexes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_submitit_local_runs_a_batch(tmp_path):
    intents = tmp_path / "intents.jsonl"
    intents.write_text('{"form": "haiku", "theme": "winter sea", "seed": 1}\n'
                       '{"form": "haiku", "theme": "winter sea", "seed": 2}\n', encoding="utf-8")
    out = tmp_path / "batch"
    result = run_cli("batch", str(intents), "--out", str(out), "model.name=verse", "generation.candidates=1",
                     "pipeline.renderers=[poem_text]", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert result.returncode == 0, result.stderr
    assert "2/2" in result.stderr and "2 artworks made" in result.stdout
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    seeds = {json.loads((Path(r["artwork"]) / "manifest.json").read_text(encoding="utf-8"))["seed"] for r in rows}
    assert seeds == {1, 2} and all(r["status"] == "ok" for r in rows)
    assert list((out / ".submitit").glob("*/*_result.pkl")), "the jobs ran through submitit"
