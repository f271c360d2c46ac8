"""Data-parallel training for real: ``torchrun --nproc_per_node=2 -m synesthesia train`` on 2 CPU processes (gloo)
follows the loss curve of one process at the same global batch, writes from rank 0 only, and resumes."""

import json
import os
import subprocess
import sys

import pytest

from synesthesia.train import main

pytestmark = pytest.mark.slow

TEXT = "The moon is a silver coin in the well; the wind counts it twice and gives it back.\n\n" * 12

# lr_decay_iters fixed: the schedule does not depend on max_iters, so a 6-step run resumed to 12 steps
# trains like one 12-step run. No dropout: the ranks' dropout masks cannot match one process's.
COMMON = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "model.dropout=0.0",
    "optim.batch_size=8", "optim.grad_accum=2", "optim.warmup_iters=2", "optim.lr_decay_iters=12",
    "optim.learning_rate=3e-3", "log_interval=1", "eval_interval=3", "eval_iters=2", "checkpoint_interval=3",
    "progress=false", "device=cpu", "dtype=float32",
]


def torchrun(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "synesthesia", "train", *overrides]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_two_processes_follow_one_process_loss_curve_and_resume(tmp_path):
    corpus = tmp_path / "moon.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    single = main([f"data.paths=[{corpus}]", f"out_dir={tmp_path / 'single'}", "optim.max_iters=12", *COMMON])

    ddp = tmp_path / "ddp"
    torchrun(f"data.paths=[{corpus}]", f"out_dir={ddp}", "optim.max_iters=6", *COMMON)
    assert json.loads((ddp / "checkpoint" / "train_state.json").read_text())["processes"] == 2
    # Resumed with the saved config (no data.paths given), lengthened because asked to.
    torchrun(f"out_dir={ddp}", "resume=true", "optim.max_iters=12")

    got, expected = rows(ddp / "metrics.jsonl"), rows(single.metrics_path)
    losses = {r["step"]: r["loss"] for r in got if "loss" in r}
    reference = {r["step"]: r["loss"] for r in expected if "loss" in r}
    assert sorted(losses) == list(range(1, 13))  # one row per step: only rank 0 logged
    assert len([r for r in got if "loss" in r]) == 12
    difference = max(abs(losses[s] - reference[s]) for s in reference)
    print(f"largest per-step loss difference, 2 processes vs 1: {difference:.2e}")
    assert difference < 1e-4
    val = {r["step"]: r["val_loss"] for r in got if "val_loss" in r}
    val_reference = {r["step"]: r["val_loss"] for r in expected if "val_loss" in r}
    assert sorted(val) == [3, 6, 9, 12] and max(abs(val[s] - val_reference[s]) for s in val) < 1e-4
    assert reference[12] < reference[1]  # it learned something: the comparison is not of two flat lines
    # Only rank 0 wrote: no leftover staging folders, one checkpoint, one best.
    assert sorted(p.name for p in ddp.iterdir()) == ["best", "checkpoint", "loss.png", "metrics.jsonl"]
