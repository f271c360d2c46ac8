"""Every command the README shows, run as written (issue 14), so the README cannot drift from the code.

The commands are read from the README's ``sh`` blocks at test time, in order, and run for real in one scratch
folder: a later command may use what an earlier one wrote (``render`` the run made before it, ``run
model.name=runs/mine`` the trained model). What a reader is meant to fill in is filled in here, and nothing
else changes: the files ``my_poems/``, ``val.txt`` and ``themes.txt`` are written, ``MODEL``, ``KEY`` and
the example run folder are filled in, training gets small sizes (``train=tiny`` and a few steps, also under
``torchrun``). A command shown twice runs once. Servers and the installation are started, used until they
answer, then stopped with SIGTERM and must exit cleanly; where no MIDI system runs (a container without ALSA's
sequencer), ``--midi-port`` must fail in one line. Any other command runs as written and must exit 0, so a
new README command is tested from the day it is written. ``make test`` is CI itself and is not run again.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# Small sizes for every training command: what the README trains for minutes trains here in seconds.
TINY_TRAIN = ["train=tiny", "optim.max_iters=30", "eval_interval=10", "eval_iters=2", "checkpoint_interval=10",
              "log_interval=10"]
FINE_TUNE = ["optim.max_iters=4", "optim.batch_size=4", "eval_interval=2", "eval_iters=1", "checkpoint_interval=2",
             "log_interval=1"]


def readme_commands() -> list[list[str]]:
    """The README's shell commands as argument lists, continuation lines joined, comments dropped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def demo_commands() -> list[list[str]]:
    """What ``make demo`` runs after its bootstrap (the recipe lines of the Makefile's demo target)."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    return [shlex.split(line.strip().replace("$(SYN)", "synesthesia")) for line in recipe.splitlines()
            if line.strip().startswith("$(SYN)")]


COMMANDS = list({shlex.join(c): c for c in readme_commands()}.values())  # a command shown twice runs once


def free_port_is(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Workspace:
    """The scratch folder every command runs in, and what earlier commands left for later ones."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        self.env.pop("SYNESTHESIA_API_KEY", None)
        self.first_run: Path | None = None
        self.server: subprocess.Popen | None = None
        poems = root / "my_poems"
        poems.mkdir()
        # A few kilobytes of the reader's own writing (any text will do for a tiny model).
        verse = "the sea is wide and the moon is old\nand winter comes with rain and cold\n"
        (poems / "poems.txt").write_text(verse * 120, encoding="utf-8")
        (root / "val.txt").write_text("O Romeo, Romeo, wherefore art thou Romeo?\n" * 20, encoding="utf-8")
        (root / "themes.txt").write_text("winter sea\n秋月\n", encoding="utf-8")

    def run(self, argv: list[str], timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=self.root, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("readme"))
    yield workspace
    if workspace.server is not None:
        stop(workspace.server)


def stop(proc: subprocess.Popen, timeout: float = 60) -> str:
    """SIGTERM, then the output; a process that does not exit cleanly fails the test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"did not stop within {timeout} s of SIGTERM:\n{out[-3000:]}")
    assert proc.returncode in (0, -signal.SIGTERM), f"exit {proc.returncode}:\n{out[-3000:]}"
    return out


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120, headers: dict | None = None) -> int:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before answering:\n{proc.stdout.read()[-3000:]}")
        try:
            return httpx.get(url, headers=headers, timeout=5).status_code
        except httpx.HTTPError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s")


def check(result: subprocess.CompletedProcess, argv: list[str]) -> None:
    assert result.returncode == 0, f"{shlex.join(argv)} -> exit {result.returncode}\n{result.stdout[-2000:]}\n" \
                                   f"{result.stderr[-3000:]}"


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        name, value = argv[0].split("=", 1)
        env[name] = value
        argv = argv[1:]
    return env, argv


def run_readme_command(ws: Workspace, argv: list[str]) -> None:
    env, argv = split_env(list(argv))
    head = argv[:2]
    if argv[0] == "make":
        if argv[1:] == ["test"]:
            pytest.skip("`make test` is CI itself")
        assert argv[1:] == ["demo"], f"a make target this test does not know: {argv}"
        for command in demo_commands():
            check(ws.run(command), command)
        for out in ("outputs/demo-zh/artwork", "outputs/demo-en/artwork"):
            assert (ws.root / out / "manifest.json").is_file(), out
        return
    if argv[0] == "torchrun":  # data-parallel training: 2 processes of the tiny model
        assert argv[argv.index("-m") + 1:][:2] == ["synesthesia", "train"], argv
        result = ws.run([str(BIN / "torchrun"), *argv[1:], *TINY_TRAIN])
        return check(result, argv)
    assert argv[0] == "synesthesia", f"a README command this test does not know: {shlex.join(argv)}"
    for arg in argv:  # files of the repository a command names (examples/intents.jsonl) are there to use
        if arg.startswith("examples/") and (REPO / arg).is_file() and not (ws.root / arg).exists():
            (ws.root / arg).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / arg, ws.root / arg)
    if head == ["synesthesia", "plugins"]:
        for variant in (["synesthesia", "plugins"], ["synesthesia", "plugins", "--json"]):
            result = ws.run(variant)
            check(result, variant)
        json.loads(result.stdout)
        return
    if head == ["synesthesia", "render"]:
        assert ws.first_run is not None, "render needs the run made by an earlier README command"
        argv = ["synesthesia", "render", str(ws.first_run)]
    if head == ["synesthesia", "train"]:
        if "resume=true" in argv:  # "train longer": a few steps more than the tiny run's
            argv = [re.sub(r"^optim\.max_iters=\d+$", "optim.max_iters=40", a) for a in argv]
        else:
            argv = argv + (FINE_TUNE if any(a.startswith("init_from=") for a in argv) else TINY_TRAIN)
    if head == ["synesthesia", "serve"]:
        return serve(ws, argv)
    if head == ["synesthesia", "installation"]:
        return installation(ws, argv)
    if "model=openai" in argv:
        argv = [{"model.name=MODEL": "model.name=tang"}.get(a, a) for a in argv]
        if ws.server is None:  # a later `serve` command of the README stopped the plain one: start it again
            serve(ws, ["synesthesia", "serve"])
    if head == ["synesthesia", "corpus"] and not shutil.which("npm") and not (ws.root / "node_modules").exists():
        result = ws.run(argv, env=env)
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return
    if argv[:2] == ["synesthesia", "run"] and "-m" in argv:
        argv = argv + ["generation.candidates=1"]
    before = set((ws.root / "outputs").glob("*/*")) if (ws.root / "outputs").exists() else set()
    result = ws.run(argv, env=env)
    check(result, argv)
    if head == ["synesthesia", "run"] and "--cfg" not in argv and "-m" not in argv and ws.first_run is None:
        made = set((ws.root / "outputs").glob("*/*")) - before
        assert len(made) == 1, made
        ws.first_run = made.pop()
        assert (ws.first_run / "artwork" / "manifest.json").is_file()


def serve(ws: Workspace, argv: list[str]) -> None:
    """Start the server as written; the plain one stays up for the README's OpenAI-client command."""
    if ws.server is not None:
        stop(ws.server)
        ws.server = None
    if not free_port_is(8000):
        pytest.skip("port 8000 (the README's default) is taken on this machine")
    argv = [{"KEY": "readme-key"}.get(a, a) for a in argv]
    proc = ws.start(argv)
    try:
        serve_checks(ws, argv, proc)
    finally:  # never leave a server behind a failed check
        if proc is not ws.server and proc.poll() is None:
            proc.kill()
            proc.wait()


def serve_checks(ws: Workspace, argv: list[str], proc: subprocess.Popen) -> None:
    if "--api-key" in argv:  # reads are open; a write without the key is refused
        import httpx

        assert wait_http("http://127.0.0.1:8000/v1/models", proc) == 200
        body = {"model": "tang", "messages": [{"role": "user", "content": "秋月"}], "max_tokens": 8}
        assert httpx.post("http://127.0.0.1:8000/v1/chat/completions", json=body, timeout=60).status_code == 401
        stop(proc)
        return
    assert wait_http("http://127.0.0.1:8000/v1/models", proc) == 200
    if argv == ["synesthesia", "serve"]:
        ws.server = proc
    else:
        stop(proc)


def installation(ws: Workspace, argv: list[str]) -> None:
    """Run the installation as written until its first artwork is in the gallery, then stop it. Without a MIDI
    system to send to (no ALSA sequencer in a container) the command must say so in one line; then it runs
    without ``--midi-port``."""
    if "--midi-port" in argv and not Path("/dev/snd/seq").exists():
        result = ws.run(argv, timeout=120)
        assert result.returncode != 0, result.stdout[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "MIDI" in lines[0], result.stderr[-3000:]
        at = argv.index("--midi-port")
        argv = argv[:at] + argv[at + 2:]
    proc = ws.start(argv)
    try:
        wait_for_artwork(ws, argv, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_artwork(ws: Workspace, argv: list[str], proc: subprocess.Popen) -> None:
    gallery = ws.root / argv[argv.index("--artworks") + 1]
    deadline = time.monotonic() + 240
    while not list(gallery.glob("*/manifest.json")) and not list(gallery.glob("*/*/manifest.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            out = stop(proc) if proc.poll() is None else proc.stdout.read()
            pytest.fail(f"no artwork from the installation (exit {proc.returncode}):\n{out[-3000:]}")
        time.sleep(1)
    stop(proc)


@pytest.mark.parametrize("argv", COMMANDS, ids=[shlex.join(c)[:60] for c in COMMANDS])
def test_readme_command(ws: Workspace, argv: list[str]) -> None:
    run_readme_command(ws, argv)


def test_readme_has_commands() -> None:
    """The parser found the quick start, the training and the serving commands (a README reshuffle that hides
    them from this test fails here)."""
    firsts = {tuple(c[:2]) for c in COMMANDS}
    assert {("make", "demo"), ("synesthesia", "run"), ("synesthesia", "train"), ("synesthesia", "serve")} <= firsts
