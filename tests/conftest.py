"""Shared test helpers: run the real CLI in a subprocess, make real plugin distributions on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
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


def model_loads(seconds: list[float]) -> int:
    """How many of a batch's ``timings.load_model`` were real loads. A load takes over a second; a worker's cached
    model a few ms at most on a busy host (0.001-0.002 s seen, which "> 0" counted as loads): a tenth of the
    slowest load tells them apart."""
    return sum(t > max(seconds) / 10 for t in seconds)


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


def _jack_is_up(env: dict[str, str]) -> bool:
    return subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10).returncode == 0


@pytest.fixture
def jack_server(monkeypatch, tmp_path):
    """A private JACK server with the dummy driver (no sound hardware needed), stopped afterwards."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("no MIDI backend: jackd is not installed (scripts/bootstrap.sh installs Debian jackd2)")
    rtmidi = pytest.importorskip("rtmidi", reason="no MIDI backend: python-rtmidi is not installed")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("no MIDI backend: python-rtmidi was built without JACK support")
    name = f"synesthesia-test-{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1", "JACK_NO_AUDIO_RESERVATION": "1"}
    log_path = tmp_path / "jackd.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "44100", "-p", "256"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 15
        while not _jack_is_up(env):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip("no MIDI backend can run here: jackd -d dummy did not start: "
                            f"{log_path.read_text(errors='replace')[-300:]}")
            time.sleep(0.2)
        for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER", "JACK_NO_AUDIO_RESERVATION"):
            monkeypatch.setenv(key, env[key])
        monkeypatch.setenv("SYNESTHESIA_MIDI_API", "UNIX_JACK")
        yield name
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
