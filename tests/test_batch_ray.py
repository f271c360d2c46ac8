"""`synesthesia batch ... hydra/launcher=ray_cluster` on a real local Ray cluster of 2 workers (one per module:
Ray starts slowly): a worker process is killed mid-batch, and every intent still ends as an artwork or a
named failure; each worker loads the model once."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, model_loads

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).with_name("ray")
# Ray's token authentication (on by default), with a token of this run's own: ~/.ray is neither read nor written.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """`ray start --head --block` with 2 CPUs (2 workers), stopped (its own process group) at the end."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)
    address = None
    deadline = time.monotonic() + 120
    for line in head.stdout:  # type: ignore[union-attr]
        if "ray start --address=" in line:
            address = line.split("--address=")[1].strip().strip("'\x1b[0-9;m")
        if "Ray runtime started" in line or time.monotonic() > deadline:
            break
    try:
        assert head.poll() is None, "ray start --head failed"
        yield address or f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:  # `ray start --block` outwaited a 30 s timeout here once: its processes are killed below anyway
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        for pid in _pids_with(temp):  # what the head started in sessions of its own (gcs_server, raylet...)
            os.kill(pid, signal.SIGKILL)


def _pids_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _busy_ray_worker() -> int | None:
    """A Ray worker process running a job now (Ray titles it ``ray::_run_job``)."""
    for pid in _pids_with("ray::_run_job"):
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        if cmdline.startswith("ray::_run_job"):
            return pid
    return None


def test_a_worker_killed_mid_batch_loses_no_intent(ray_cluster, tmp_path):
    intents = tmp_path / "intents.jsonl"
    intents.write_text("".join(json.dumps({"form": "haiku", "theme": "winter sea", "seed": s}) + "\n"
                               for s in range(8)), encoding="utf-8")
    out = tmp_path / "batch"
    batch = subprocess.Popen([sys.executable, "-m", "synesthesia", "batch", str(intents), "--out", str(out),
                              "model.name=verse", "generation.candidates=4", "pipeline.renderers=[poem_text]",
                              "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and batch.poll() is None and time.monotonic() < deadline:
        started = (out / ".progress").is_dir() and any((out / ".progress").iterdir())
        pid = _busy_ray_worker() if started else None  # mid-batch: one job done, another being made
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.05)
    stdout, stderr = batch.communicate(timeout=max(10.0, deadline - time.monotonic()))
    assert killed is not None, f"no busy Ray worker seen to kill: {stderr[-2000:]}"
    assert not Path(f"/proc/{killed}").exists() or "zombie" in Path(f"/proc/{killed}/status").read_text()
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["line"] for r in rows) == list(range(1, 9)), "every intent is in the index"
    for row in rows:
        assert row["status"] == "ok" or row["error"], row  # an artwork, or a failure that says why
    made = [r for r in rows if r["status"] == "ok"]
    assert len(made) == 8, f"Ray retried the killed worker's job: {stderr[-2000:]}"  # max_retries (3) by default
    for row in made:
        assert (Path(row["artwork"]) / "manifest.json").is_file() and (Path(row["artwork"]) / "text.txt").is_file()
    assert not list(out.glob("*/.artwork-staging-*")) or batch.returncode == 0
    loads = [json.loads((Path(r["artwork"]) / "manifest.json").read_text(encoding="utf-8"))["timings"]["load_model"]
             for r in made]
    assert model_loads(loads) <= 4, f"each worker loads the model once (2 + the replacement): {loads}"
    assert batch.returncode == 0, stderr[-2000:]
