"""Shared test helpers: run the real CLI in a subprocess, make real plugin distributions on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m synesthesia ARGS`` for real and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "synesthesia", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def make_plugin_dist(root: Path, name: str, source: str, version: str = "0.1.0") -> Path:
    """Write a real importable plugin module plus its ``.dist-info`` (with the entry point) under root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist = root / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[synesthesia]\n{name} = {name}\n", encoding="utf-8")
    return root


@pytest.fixture
def plugin_dir(tmp_path: Path):
    """A folder for plugin distributions and the env that puts it on the path of a subprocess."""
    folder = tmp_path / "site"
    folder.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return folder, env


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny models, which gain nothing from threads; on shared, busy cores spinning OpenMP
    threads make them many times slower. Subprocesses (the real CLI) keep their own setting."""
    import torch  # lazy: the CLI tests check that start-up imports no torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
