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


TINY_TEXT = "the sea at night is cold and wide\nthe moon above, the waves beside\n"


def save_tiny_checkpoint(folder: Path, texts: list[str] | tuple[str, ...] = (TINY_TEXT,), languages=("en",),
                         forms=("lines",), tokenizer=None, **gpt: int) -> Path:
    """Save a small real checkpoint in ``folder``: a char tokenizer over ``texts`` (with the control tokens of
    ``languages`` and ``forms``; or ``tokenizer`` as given) and a randomly initialised GPT (seed 0; ``gpt``
    overrides its sizes)."""
    import torch

    from synesthesia.checkpoint import save_checkpoint
    from synesthesia.model import GPT, GPTConfig
    from synesthesia.tokenizer import CharTokenizer, control_tokens_for

    if tokenizer is None:
        tokenizer = CharTokenizer.train(list(texts), control_tokens=control_tokens_for(list(languages), list(forms)))
    torch.manual_seed(0)
    sizes = {"block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32, **gpt}
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **sizes))
    return save_checkpoint(folder, model, tokenizer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small real checkpoint over a little English verse (form ``lines``), randomly initialised: fast, and
    whatever it writes is letters with syllables to sing."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


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
