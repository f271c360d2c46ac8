"""``synesthesia installation``: an unattended loop for exhibitions, one artwork every N seconds.

::

    synesthesia installation --artworks gallery --themes-file themes.txt --every 60 \\
        --osc-out 127.0.0.1:9000 --osc-in 9001 --http-port 8766 --midi-port "FLUID Synth" \\
        --keep 500 --max-mb 2000 pipeline.renderers=[poem_html,midi,imageprompt]

Where themes come from, first come first served:

- **triggers**: an OSC message ``/synesthesia/theme <theme> [<form>]`` to ``--osc-in`` (UDP), or an HTTP
  ``POST /trigger`` with ``{"theme": ..., "form": ...}`` to ``--http-port``: made next, at once;
- **the list**: ``--theme`` (repeatable) and ``--themes-file`` (one theme a line, ``form | theme`` to choose
  the form, ``#`` comments; re-read when it changes), cycled in order every ``--every`` seconds.

Each artwork is a run folder ``ARTWORKS/<YYYYMMDD-HHMMSS>-i<seq>/artwork/`` written atomically by the
pipeline, so ``synesthesia serve --artworks ARTWORKS`` and its gallery page show it as soon as it is
complete. The model is loaded once (a shared ``GeneratorCache``). Every artwork is also sent out:

- **OSC** (``--osc-out HOST:PORT``, repeatable; python-osc over UDP), for TouchDesigner, Max or Pure Data
  patches: ``/synesthesia/artwork/begin seq form theme``, ``/synesthesia/artwork/text text``,
  ``/synesthesia/artwork/line index line``, ``/synesthesia/artwork/note index pitch velocity start duration
  channel syllable`` (seconds from the melody's start), ``/synesthesia/artwork/file renderer path``,
  ``/synesthesia/artwork/done seq id path``; with ``--osc-live-notes`` also ``/synesthesia/note/on pitch
  velocity channel syllable`` and ``/synesthesia/note/off pitch channel`` as the melody sounds
  (``--midi-speed`` scales its tempo); ``/synesthesia/artwork/renderer_error renderer message`` and
  ``/synesthesia/error seq message`` when something failed; ``/synesthesia/status state ...`` on start
  (with the trigger ports) and stop;
- **a live MIDI port** (``--midi-port``): the melody is played to it (the MIDI plugin's live output);
- **the gallery**: the artwork folder itself. With ``--server URL`` (a running ``synesthesia serve`` whose
  ``--artworks`` is the same folder) each artwork is made by the server instead, as a ``POST /v1/artworks``
  job: its gallery page shows it live, and the loop still sends it to OSC and MIDI.

Retention: ``--keep N`` keeps the newest N artworks this loop made, ``--max-mb M`` keeps their total under
M megabytes (the newest is always kept); older ones are renamed away (a reader never sees half a folder)
and deleted. Artworks it did not make are never touched.

A failed artwork (an unknown form in the themes file, a model error) or a failed renderer is logged, sent
as an OSC error, and the loop goes on. SIGTERM or Ctrl-C stops it cleanly: the artwork in hand is
finished (a second signal abandons it; the pipeline never publishes half an artwork) and the state is
saved. The state (``ARTWORKS/.synesthesia-installation.json``, written atomically) holds the position in
the list, the sequence number and the pending triggers, so a restart continues where it stopped — an
artwork that was interrupted is made again in the same folder.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hmac
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from synesthesia.errors import ConfigError, SynesthesiaError

STATE_FILE = ".synesthesia-installation.json"
STATE_VERSION = 1
OSC_PREFIX = "/synesthesia"
RUN_NAME = re.compile(r"^\d{8}-\d{6}-i(\d{6,})$")
MAX_QUEUE = 100
MAX_THEME_CHARS = 200
MAX_BODY_BYTES = 4096
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Abandon(BaseException):
    """Raised in the main thread by a second stop signal: the artwork in hand is abandoned."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _server_error(reply: Any) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except Exception:
        return reply.text[:300]


def _log(message: str) -> None:
    print(f"{_dt.datetime.now().strftime('%H:%M:%S')} installation: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Themes


@dataclass
class Item:
    """One artwork to make: a theme, its form (None: chosen by the theme's script) and where it came from."""

    theme: str
    form: str | None = None
    source: str = "list"

    def to_dict(self) -> dict[str, Any]:
        return {"theme": self.theme, "form": self.form, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(str(data.get("theme") or ""), data.get("form") or None, str(data.get("source") or "list"))


def parse_themes(text: str) -> list[Item]:
    """Theme lines: ``theme`` or ``form | theme``; blank lines and ``#`` comments skipped."""
    items = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if "|" in line:
            form, theme = (part.strip() for part in line.split("|", 1))
            items.append(Item(theme, form or None))
        else:
            items.append(Item(line))
    return items


def auto_form(theme: str) -> str:
    """七绝 for a theme in Chinese characters, haiku otherwise."""
    return "七绝" if any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in theme) else "haiku"


class ThemeList:
    """Themes from the command line and a file; the file is re-read when it changes."""

    def __init__(self, themes: list[str], form: str | None, path: Path | None) -> None:
        self.fixed = [Item(t.strip(), None) for t in themes if t.strip()]
        self.form = form
        self.path = path
        self._stamp: tuple | None = None
        self._from_file: list[Item] = []

    def items(self) -> list[Item]:
        if self.path is not None:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    self._from_file = parse_themes(self.path.read_text(encoding="utf-8"))
                    self._stamp = stamp
            except (OSError, UnicodeDecodeError) as exc:
                _log(f"cannot read the themes file {self.path}: {exc}; keeping the themes read before")
        return [Item(i.theme, i.form or self.form) for i in self.fixed + self._from_file]


# --------------------------------------------------------------------------------------------------
# State, written atomically


@dataclass
class State:
    next_seq: int = 1
    position: int = 0  # index of the next list theme
    made: int = 0
    failed: int = 0
    current: dict[str, Any] | None = None  # the artwork in hand: seq, run, seed, item
    queue: list[dict[str, Any]] = field(default_factory=list)  # pending triggers
    last: dict[str, Any] | None = None  # the last artwork made
    owned: list[str] = field(default_factory=list)  # run folders the server made for this loop (--server)

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"not a version {STATE_VERSION} state")
            return cls(next_seq=int(data.get("next_seq", 1)), position=int(data.get("position", 0)),
                       made=int(data.get("made", 0)), failed=int(data.get("failed", 0)),
                       current=data.get("current"), queue=list(data.get("queue") or []), last=data.get("last"),
                       owned=[str(name) for name in data.get("owned") or []])
        except (OSError, ValueError, TypeError) as exc:
            raise SynesthesiaError(f"cannot read the installation state {path}: {exc}; move it away to start "
                                   "afresh") from None

    def save(self, path: Path) -> None:
        from synesthesia.fileio import write_json_atomic

        write_json_atomic(path, {"version": STATE_VERSION, "updated": _now(), "next_seq": self.next_seq,
                                 "position": self.position, "made": self.made, "failed": self.failed,
                                 "current": self.current, "queue": self.queue, "last": self.last,
                                 "owned": self.owned})


# --------------------------------------------------------------------------------------------------
# Outputs


def parse_host_port(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{value!r}: give HOST:PORT or PORT") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{value!r}: port {number} is out of range")
    return (host.strip("[]") or default_host), number


class OscOut:
    """Messages to every ``--osc-out`` address; a send that fails is logged, never fatal."""

    def __init__(self, targets: list[tuple[str, int]], prefix: str = OSC_PREFIX) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        self.prefix = prefix.rstrip("/")
        self.clients = [(f"{host}:{port}", SimpleUDPClient(host, port)) for host, port in targets]

    def send(self, address: str, *args: Any) -> None:
        for target, client in self.clients:
            try:
                client.send_message(self.prefix + address, list(args))
            except OSError as exc:
                _log(f"OSC send to {target} failed: {exc}")


def melody_notes(midi_path: Path) -> list[tuple[int, int, float, float, int, str]]:
    """(pitch, velocity, start s, duration s, channel, syllable) of every note of a MIDI file, in order."""
    from synesthesia_midi.midi_file import read_midi

    notes: list[list[Any]] = []
    sounding: dict[tuple[int, int], list[Any]] = {}
    now, lyric = 0.0, ""
    for message in read_midi(midi_path):
        now += message.time
        if message.type == "lyrics":
            lyric = message.text
        elif message.type == "note_on" and message.velocity > 0:
            note = [message.note, message.velocity, round(now, 4), 0.0, message.channel,
                    lyric if message.channel == 0 else ""]
            if message.channel == 0:
                lyric = ""
            sounding[(message.channel, message.note)] = note
            notes.append(note)
        elif message.type in ("note_off", "note_on"):
            note = sounding.pop((message.channel, message.note), None)
            if note is not None:
                note[3] = round(now - note[2], 4)
    return [tuple(n) for n in notes]  # type: ignore[misc]


class OscLiveNotes:
    """The melody as OSC in real time (``--osc-live-notes``): ``/synesthesia/note/on pitch velocity channel
    syllable`` and ``/synesthesia/note/off pitch channel`` when each note starts and ends, in a thread; the next
    artwork's melody waits for the one playing. Stopping sends the offs of sounding notes at once."""

    def __init__(self, osc: OscOut, speed: float) -> None:
        self.osc = osc
        self.speed = speed
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def play(self, notes: list[tuple]) -> None:
        if self.thread is not None:
            self.thread.join()
        self.thread = threading.Thread(target=self._play, args=(notes,), name="osc-notes", daemon=True)
        self.thread.start()

    def _play(self, notes: list[tuple]) -> None:
        events = sorted([(n[2], 1, n) for n in notes] + [(n[2] + n[3], 0, n) for n in notes],
                        key=lambda e: (e[0], e[1]))  # at the same time, offs before ons
        sounding: set[tuple[int, int]] = set()
        start = time.perf_counter()
        try:
            for at, on, (pitch, velocity, _, _, channel, syllable) in events:
                delay = at / self.speed - (time.perf_counter() - start)
                if delay > 0 and self.stop.wait(delay):
                    return
                if on:
                    self.osc.send("/note/on", pitch, velocity, channel, syllable)
                    sounding.add((pitch, channel))
                elif (pitch, channel) in sounding:
                    self.osc.send("/note/off", pitch, channel)
                    sounding.discard((pitch, channel))
        finally:
            for pitch, channel in sorted(sounding):
                self.osc.send("/note/off", pitch, channel)

    def close(self, *, finish: bool = False) -> None:
        if not finish:
            self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=None if finish else 5)


class MidiOut:
    """The melody to a live MIDI port (``synesthesia_midi.live``), in a thread; a new artwork's melody
    waits for the one playing. Stopping silences the port at once (all notes off)."""

    def __init__(self, port: str, api: str | None, speed: float) -> None:
        from synesthesia_midi import live

        self.live = live
        self.api = api
        self.speed = speed
        self.port = live._resolve_port(port, live.output_names(api))  # a missing port is one clear error now
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def play(self, midi_path: Path) -> None:
        if self.thread is not None:
            self.thread.join()
        self.thread = threading.Thread(target=self._play, args=(midi_path,), name="midi-out", daemon=True)
        self.thread.start()

    def _play(self, midi_path: Path) -> None:
        from synesthesia_midi.midi_file import read_midi

        try:
            midi = read_midi(midi_path)
            with self.live.backend(self.api).open_output(self.port) as port:
                try:
                    start, due = time.perf_counter(), 0.0
                    for message in midi:
                        due += message.time / self.speed
                        if message.is_meta:
                            continue
                        delay = due - (time.perf_counter() - start)
                        if delay > 0 and self.stop.wait(delay):
                            return
                        port.send(message)
                finally:
                    port.reset()
        except Exception as exc:  # the loop goes on without live MIDI for this artwork
            _log(f"MIDI port {self.port}: {type(exc).__name__}: {exc}")

    def close(self, *, finish: bool = False) -> None:
        """Stop: at once (all notes off), or after the melody playing (``finish``, at the end of ``--count``)."""
        if not finish:
            self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=None if finish else 5)


# --------------------------------------------------------------------------------------------------
# Triggers in


class Triggers:
    """Themes queued by OSC and HTTP, persisted in the state so a restart keeps them."""

    def __init__(self, loop: Installation) -> None:
        self.loop = loop
        self.servers: list[Any] = []

    def accept(self, theme: Any, form: Any, source: str) -> tuple[bool, str]:
        if not isinstance(theme, str) or not theme.strip():
            return False, "a theme (a non-empty string) is required"
        theme = theme.strip()
        if len(theme) > MAX_THEME_CHARS:
            return False, f"the theme is longer than {MAX_THEME_CHARS} characters"
        if form is not None and (not isinstance(form, str) or not form.strip()):
            return False, "form must be a form name"
        if form is not None:
            try:
                self.loop.registry.form(form.strip())
            except ConfigError as exc:
                return False, str(exc)
        return self.loop.enqueue(Item(theme, form.strip() if form else None, source))

    def start_osc(self, host: str, port: int) -> int:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer

        dispatcher = Dispatcher()

        def on_theme(address: str, *args: Any) -> None:
            ok, message = self.accept(args[0] if args else None, args[1] if len(args) > 1 else None, "osc")
            _log(f"OSC trigger {address} {list(args)!r}: {message}")
            if not ok:
                self.loop.osc.send("/error", 0, f"trigger refused: {message}")

        def on_next(address: str, *args: Any) -> None:
            self.loop.wake.set()
            _log(f"OSC trigger {address}: the next theme now")

        dispatcher.map(f"{OSC_PREFIX}/theme", on_theme)
        dispatcher.map(f"{OSC_PREFIX}/next", on_next)
        server = ThreadingOSCUDPServer((host, port), dispatcher)
        self._serve(server, "osc-in")
        return server.server_address[1]

    def start_http(self, host: str, port: int, api_key: str | None) -> int:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        triggers = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "synesthesia-installation"

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/status":
                    return self._reply(404, {"error": "not found: GET /status or POST /trigger"})
                self._reply(200, triggers.loop.status())

            def do_POST(self) -> None:  # noqa: N802
                if self.path.split("?")[0] != "/trigger":
                    return self._reply(404, {"error": "not found: POST /trigger"})
                if api_key is not None:
                    given = self.headers.get("X-API-Key") or self.headers.get("Authorization", "").removeprefix(
                        "Bearer ").strip()
                    if not hmac.compare_digest(given.encode(), api_key.encode()):
                        return self._reply(401, {"error": "an API key is required (X-API-Key or Bearer)"})
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY_BYTES:
                    return self._reply(413, {"error": f"the body must be 0 to {MAX_BODY_BYTES} bytes"})
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("not an object")
                except (ValueError, UnicodeDecodeError) as exc:
                    return self._reply(400, {"error": f"the body must be a JSON object: {exc}"})
                unknown = set(body) - {"theme", "form"}
                if unknown:
                    return self._reply(400, {"error": f"unknown keys: {', '.join(sorted(unknown))}"})
                ok, message = triggers.accept(body.get("theme"), body.get("form"), "http")
                if ok:
                    return self._reply(202, {"queued": message})
                if message.startswith("the queue is full"):
                    return self._reply(429, {"error": message}, {"Retry-After": "30"})
                return self._reply(400, {"error": message})

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the loop logs what matters
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        self._serve(server, "http-in")
        return server.server_address[1]

    def _serve(self, server: Any, name: str) -> None:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        self.servers.append(server)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------------------------------
# The loop


def compose_config(overrides: list[str], registry: Any) -> dict[str, Any]:
    """The run config ``synesthesia run OVERRIDES`` would compose, as plain values."""
    from synesthesia.config import compose_run_config

    return compose_run_config(overrides, registry)


def run_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def apply_retention(artworks: Path, keep: int, max_bytes: int, log: Callable[[str], None] = _log,
                    owned: list[str] | None = None) -> list[str]:
    """Delete the oldest run folders this loop made (named ``…-iSEQ``, or listed in ``owned``: made by the
    server for it) beyond ``keep`` or ``max_bytes``; the newest is always kept. Each is renamed to a hidden
    name first, so readers never see half of it. Folder names start with their UTC time, so they sort."""
    mine = set(owned or [])
    ordered = sorted(((p.name[:15], int(m.group(1)) if (m := RUN_NAME.match(p.name)) else 0), p)
                     for p in artworks.iterdir()
                     if (RUN_NAME.match(p.name) or p.name in mine) and p.is_dir() and not p.is_symlink())
    runs = [p for _, p in ordered]
    doomed: list[Path] = []
    if keep > 0 and len(runs) > keep:
        doomed, runs = runs[:-keep], runs[-keep:]
    if max_bytes > 0:
        sizes = [run_size(p) for p in runs]
        while len(runs) > 1 and sum(sizes) > max_bytes:
            doomed.append(runs.pop(0))
            sizes.pop(0)
    removed = []
    for path in doomed:
        trash = path.with_name(f".deleting-{path.name}-{os.getpid()}")
        try:
            os.replace(path, trash)
        except OSError as exc:
            log(f"retention: cannot remove {path}: {exc}")
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(path.name)
    for leftover in artworks.glob(".deleting-*"):  # a crash between the rename and the delete
        shutil.rmtree(leftover, ignore_errors=True)
    if removed:
        log(f"retention: removed {len(removed)} old artwork(s): {', '.join(removed)}")
    return removed


class Installation:
    def __init__(self, *, artworks: Path, themes: ThemeList, every: float, count: int, seed: int,
                 overrides: list[str], osc: OscOut, keep: int, max_mb: float, state_path: Path | None = None,
                 midi: Any = None, registry: Any = None, server: str | None = None,
                 server_key: str | None = None) -> None:
        from synesthesia.pipeline import GeneratorCache
        from synesthesia.plugins import get_registry

        self.artworks = artworks
        self.themes = themes
        self.every = every
        self.count = count
        self.seed = seed
        self.osc = osc
        self.midi = midi
        self.keep = keep
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.registry = registry or get_registry()
        self.base = compose_config(overrides, self.registry)
        self.generators = GeneratorCache()
        self.state_path = state_path or artworks / STATE_FILE
        self.lock = threading.Lock()
        self.state = State.load(self.state_path)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.in_artwork = False
        self.signals = 0
        self.made_here = 0  # artworks attempted by this process
        self.live_notes: OscLiveNotes | None = None
        self.http = None
        if server:
            import httpx

            headers = {"Authorization": f"Bearer {server_key}"} if server_key else {}
            self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=30)

    # -- shared with the trigger threads ----------------------------------------------------------

    def enqueue(self, item: Item) -> tuple[bool, str]:
        with self.lock:
            if len(self.state.queue) >= MAX_QUEUE:
                return False, f"the queue is full ({MAX_QUEUE} themes waiting)"
            self.state.queue.append(item.to_dict())
            self.state.save(self.state_path)
            position = len(self.state.queue)
        self.wake.set()
        return True, f"{item.theme!r} is number {position} in the queue"

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"made": self.state.made, "failed": self.state.failed, "next_seq": self.state.next_seq,
                    "queue": list(self.state.queue), "current": self.state.current, "last": self.state.last,
                    "stopping": self.stopping.is_set()}

    # -- signals ----------------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping.set()
        self.wake.set()
        if self.signals == 1:
            _log(f"{signal.Signals(signum).name}: stopping after the artwork in hand"
                 if self.in_artwork else f"{signal.Signals(signum).name}: stopping")
        elif self.in_artwork:
            _log("second signal: abandoning the artwork in hand")
            raise Abandon()

    # -- the loop ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Every check before the first artwork: the overrides and options (one plan; a bad one stops the
        loop before it starts), then the list's forms (an unknown one is named; its artworks will fail)."""
        from synesthesia.pipeline import plan

        items = self.themes.items()
        plan(self._config(Item(items[0].theme if items else "sea"), 0), self.registry)
        for form in sorted({i.form for i in items if i.form}):
            try:
                self.registry.form(form)
            except ConfigError as exc:
                _log(f"warning: {exc} (its themes will fail and be skipped)")

    def _config(self, item: Item, seed: int) -> dict[str, Any]:
        config = copy.deepcopy(self.base)
        config["form"] = item.form or auto_form(item.theme)
        config["theme"] = item.theme
        config["seed"] = seed
        return config

    def _next(self) -> dict[str, Any] | None:
        """The artwork to make next (resumed, triggered or listed), recorded in the state before it starts."""
        with self.lock:
            state = self.state
            if state.current is not None:  # interrupted last time: made again, in the same folder
                return state.current
            if state.queue:
                item = Item.from_dict(state.queue.pop(0))
            else:
                items = self.themes.items()
                if not items:
                    return None
                item = items[state.position % len(items)]
                state.position = (state.position + 1) % len(items)
            seq = state.next_seq
            state.next_seq += 1
            run = f"{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}-i{seq:06d}"
            state.current = {"seq": seq, "run": run, "seed": self.seed + seq, **item.to_dict()}
            state.save(self.state_path)
            return state.current

    def make(self, current: dict[str, Any]) -> bool:
        from synesthesia.pipeline import run_pipeline

        item = Item.from_dict(current)
        seq, run_dir = int(current["seq"]), self.artworks / current["run"]
        form = item.form or auto_form(item.theme)
        self.osc.send("/artwork/begin", seq, form, item.theme)
        _log(f"#{seq} {form} · {item.theme} ({item.source})")
        started = time.perf_counter()
        warnings: list[str] = []

        def log(message: str) -> None:
            warnings.append(message)
            _log(f"#{seq} {message}")

        try:
            self.in_artwork = True
            if self.http is not None:
                artwork = self._via_server(self._config(item, int(current["seed"])))
            else:
                artwork = run_pipeline(self._config(item, int(current["seed"])), run_dir, registry=self.registry,
                                       log=log, generators=self.generators)
        except Abandon:
            self.in_artwork = False
            _log(f"#{seq} abandoned; a restart makes it again")
            if run_dir.is_dir() and not (run_dir / "artwork").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except Exception as exc:  # a failed artwork is logged and the loop goes on
            self.in_artwork = False
            message = f"{type(exc).__name__}: {exc}"
            _log(f"#{seq} failed: {message}")
            self.osc.send("/error", seq, message)
            if run_dir.is_dir() and not (run_dir / "artwork").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            with self.lock:
                self.state.failed += 1
                self.state.current = None
                self.state.save(self.state_path)
            return False
        self.in_artwork = False
        seconds = time.perf_counter() - started
        run = Path(artwork.path).parent.relative_to(self.artworks).as_posix()
        with self.lock:
            self.state.made += 1
            self.state.current = None
            if self.http is not None:
                self.state.owned.append(run)
            self.state.last = {"seq": seq, "run": run, "theme": item.theme, "form": form,
                               "finished": _now(), "seconds": round(seconds, 3)}
            self.state.save(self.state_path)
        _log(f"#{seq} done in {seconds:.1f} s: {artwork.path}")
        self.publish(seq, run.replace("/", "~"), artwork)
        return True

    def _changed_renderer_options(self, renderer: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The renderer options that differ from their defaults (the composed config holds every option, as
        for `run`; the server takes the rest from its own, and refuses some, such as font paths, over HTTP)."""
        from synesthesia.plugins import option_defaults

        changed = {}
        for name, options in renderer.items():
            defaults = option_defaults(self.registry.renderer(name))
            differing = {k: v for k, v in dict(options or {}).items() if k not in defaults or defaults[k] != v}
            if differing:
                changed[name] = differing
        return changed

    def _via_server(self, config: dict[str, Any]) -> Any:
        """Make the artwork as a job of ``synesthesia serve`` (so its gallery shows it live); the artwork, read
        back from the shared artworks folder."""
        from synesthesia.components import Artwork
        from synesthesia.server.intent import GenerationIntent  # the settings an intent may carry

        gen = dict(config.get("generation") or {})
        accepted = GenerationIntent.model_fields
        intent: dict[str, Any] = {"form": config["form"], "theme": config["theme"], "seed": config["seed"],
                                  "generation": {k: gen[k] for k in accepted if gen.get(k) is not None}}
        renderers = list(dict(config.get("pipeline") or {}).get("renderers") or ["all"])
        if renderers != ["all"]:
            intent["renderers"] = renderers
        options = self._changed_renderer_options(dict(config.get("renderer") or {}))
        if options:
            intent["options"] = options
        if config.get("form_options"):
            intent["form_options"] = config["form_options"]
        model = str(dict(config.get("model") or {}).get("name") or "auto")
        if model != "auto":
            intent["model"] = model
        while True:
            reply = self.http.post("/v1/artworks", json=intent)
            if reply.status_code not in (429, 503):
                break
            wait = min(30.0, float(reply.headers.get("Retry-After") or 5))
            _log(f"the server is busy ({reply.status_code}); trying again in {wait:g} s")
            if self.stopping.wait(wait):
                raise SynesthesiaError("stopped while the server was busy")
        if reply.status_code != 202:
            raise SynesthesiaError(f"the server refused the intent ({reply.status_code}): {_server_error(reply)}")
        job = reply.json()
        while job["status"] in ("queued", "running"):  # the artwork in hand: a first stop signal waits for it
            time.sleep(0.2)
            job = self.http.get(job["url"]).json()
        if job["status"] != "succeeded":
            raise SynesthesiaError(f"the server's job {job['id']} {job['status']}: {job.get('error')}")
        detail = self.http.get(job["artwork_url"]).json()
        path = self.artworks / str(detail["id"]).replace("~", "/") / "artwork"
        if not (path / "manifest.json").is_file():
            raise SynesthesiaError(f"the server wrote artwork {detail['id']} outside {self.artworks}: give "
                                   "--artworks the folder `synesthesia serve --artworks` uses")
        files = [path / name for name in detail.get("files") or [] if name != "manifest.json"]
        return Artwork(path=path, text=str(detail.get("text") or ""), manifest=detail.get("manifest") or {},
                       files=files + [path / "manifest.json"])

    def publish(self, seq: int, run: str, artwork: Any) -> None:
        text = artwork.text.strip("\n")
        self.osc.send("/artwork/text", text)
        for index, line in enumerate(line for line in text.splitlines() if line.strip()):
            self.osc.send("/artwork/line", index, line)
        for name, entry in (artwork.manifest.get("renderers") or {}).items():
            if entry.get("error"):
                self.osc.send("/artwork/renderer_error", name, str(entry["error"]))
        midi = next((p for p in artwork.files if p.name == "melody.mid"), None)
        if midi is not None and midi.is_file():
            try:
                notes = melody_notes(midi)
                for index, note in enumerate(notes):
                    self.osc.send("/artwork/note", index, *note)
                if self.live_notes is not None:
                    self.live_notes.play(notes)
            except Exception as exc:
                _log(f"#{seq} cannot read {midi} for OSC notes: {exc}")
            if self.midi is not None:
                self.midi.play(midi)
        for path in artwork.files:
            rel = path.relative_to(artwork.path)
            renderer = rel.parts[0] if len(rel.parts) > 1 else ""
            self.osc.send("/artwork/file", renderer, str(path))
        self.osc.send("/artwork/path", str(artwork.path))
        self.osc.send("/artwork/done", seq, run, str(artwork.path))

    def run(self) -> int:
        _log(f"writing artworks into {self.artworks} every {self.every:g} s"
             + (f", {self.count} this time" if self.count else ""))
        with self.lock:
            if self.state.current is not None:
                _log(f"continuing: #{self.state.current['seq']} was interrupted; making it again")
        next_due = time.monotonic()
        while True:
            self.wake.clear()  # before every look at the queue and the stop flag, so no wake-up is lost
            if self.stopping.is_set() or (self.count and self.made_here >= self.count):
                break
            with self.lock:
                triggered = bool(self.state.queue) or self.state.current is not None
            if not triggered:
                delay = next_due - time.monotonic()
                if delay > 0 or not self.themes.items():
                    self.wake.wait(delay if delay > 0 else None)
                    continue  # woken: a trigger, a stop, or the time has come
            current = self._next()
            if current is None:
                continue
            next_due = time.monotonic() + self.every
            self.make(current)
            self.made_here += 1
            try:
                removed = apply_retention(self.artworks, self.keep, self.max_bytes, owned=self.state.owned)
                if removed:
                    with self.lock:
                        self.state.owned = [r for r in self.state.owned if r not in removed]
                        self.state.save(self.state_path)
            except OSError as exc:
                _log(f"retention failed: {exc}")
        return self.made_here


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--artworks", type=click.Path(file_okay=False, path_type=Path), default=Path("gallery"),
              show_default=True, help="Folder the artworks go into (the one `synesthesia serve` indexes).")
@click.option("--theme", "themes", multiple=True, help="A theme (repeatable); cycled in order.")
@click.option("--themes-file", type=click.Path(dir_okay=False, path_type=Path),
              help="One theme a line ('form | theme' to choose the form); re-read when it changes.")
@click.option("--form", default=None, help="Form for themes that name none (default: 七绝 for Chinese, haiku).")
@click.option("--every", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds from one listed artwork's start to the next (triggers do not wait).")
@click.option("--count", default=0, show_default=True, type=click.IntRange(min=0),
              help="Stop after this many artworks (0: run until stopped).")
@click.option("--seed", default=0, show_default=True, type=int, help="Artwork number N gets seed SEED+N.")
@click.option("--osc-out", multiple=True, help="HOST:PORT to send OSC messages to (repeatable).")
@click.option("--osc-prefix", default=OSC_PREFIX, show_default=True, help="Address prefix of outgoing OSC.")
@click.option("--osc-in", "osc_in", default=None, type=int, help="UDP port for OSC triggers (0: any free).")
@click.option("--http-port", default=None, type=int, help="TCP port for HTTP triggers: POST /trigger (0: any).")
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address the trigger ports bind.")
@click.option("--api-key", envvar="SYNESTHESIA_API_KEY", default=None,
              help="Key HTTP triggers must send (X-API-Key); required when --listen is not loopback.")
@click.option("--midi-port", default=None, help="MIDI output port to play each melody to.")
@click.option("--midi-api", default=None, help="rtmidi API: UNIX_JACK, LINUX_ALSA, MACOSX_CORE, WINDOWS_MM.")
@click.option("--osc-live-notes", is_flag=True,
              help="Also send each note over OSC when it sounds (/synesthesia/note/on, /note/off).")
@click.option("--midi-speed", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Tempo factor of the live MIDI output and of --osc-live-notes.")
@click.option("--server", default=None, help="URL of a running `synesthesia serve` (same --artworks folder): "
                                            "it makes the artworks, so its gallery shows them live.")
@click.option("--server-key", envvar="SYNESTHESIA_SERVER_KEY", default=None, help="That server's API key.")
@click.option("--keep", default=0, show_default=True, type=click.IntRange(min=0),
              help="Keep the newest N artworks this loop made (0: all).")
@click.option("--max-mb", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Keep this loop's artworks under M megabytes (0: no limit).")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def installation(artworks: Path, themes: tuple[str, ...], themes_file: Path | None, form: str | None, every: float,
                 count: int, seed: int, osc_out: tuple[str, ...], osc_prefix: str, osc_in: int | None,
                 http_port: int | None, listen: str, api_key: str | None, midi_port: str | None,
                 midi_api: str | None, osc_live_notes: bool, midi_speed: float, server: str | None,
                 server_key: str | None, keep: int,
                 max_mb: float, overrides: tuple[str, ...]) -> None:
    """Run unattended: one artwork every N seconds from a theme list, a file, OSC or HTTP triggers.

    OVERRIDES are Hydra overrides for every artwork (pipeline.renderers=[poem_html,midi]
    generation.candidates=4 model.dtype=int8). Outputs: the artworks folder (the gallery), OSC messages,
    a live MIDI port. SIGTERM stops it cleanly; a restart continues where it stopped.
    """
    if themes_file is not None and not themes_file.is_file():
        raise ConfigError(f"--themes-file {themes_file} does not exist")
    if not themes and themes_file is None and osc_in is None and http_port is None:
        raise ConfigError("no themes: give --theme, --themes-file, or a trigger port (--osc-in, --http-port)")
    if http_port is not None and listen not in LOOPBACK and not api_key:
        raise ConfigError(f"--listen {listen} exposes the HTTP trigger beyond this machine: set --api-key "
                          "(or SYNESTHESIA_API_KEY)")
    artworks.mkdir(parents=True, exist_ok=True)
    osc = OscOut([parse_host_port(t) for t in osc_out], osc_prefix)
    loop = Installation(artworks=artworks.resolve(), themes=ThemeList(list(themes), form, themes_file), every=every,
                        count=count, seed=seed, overrides=list(overrides), osc=osc, keep=keep, max_mb=max_mb,
                        server=server, server_key=server_key)
    loop.check()
    if loop.http is not None:
        try:
            health = loop.http.get("/health").json()
            _log(f"artworks are made by the server at {server} (status {health.get('status')})")
        except Exception as exc:  # it may come up later: each artwork that cannot reach it is logged
            _log(f"cannot reach the server at {server} yet: {type(exc).__name__}: {exc}")
    midi = MidiOut(midi_port, midi_api, midi_speed) if midi_port else None
    loop.midi = midi
    loop.live_notes = OscLiveNotes(osc, midi_speed) if osc_live_notes else None
    previous = {sig: signal.signal(sig, loop.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    triggers = Triggers(loop)
    try:
        ports = []
        if osc_in is not None:
            bound = triggers.start_osc(listen, osc_in)
            ports += ["osc", bound]
            _log(f"OSC triggers: udp://{listen}:{bound}{OSC_PREFIX}/theme <theme> [<form>]")
        if http_port is not None:
            if listen not in LOOPBACK:
                _log("the HTTP trigger is reachable from other machines; every POST needs the API key")
            bound = triggers.start_http(listen, http_port, api_key)
            ports += ["http", bound]
            _log(f"HTTP triggers: POST http://{listen}:{bound}/trigger {{\"theme\": ..., \"form\": ...}}")
        osc.send("/status", "started", *ports)
        try:
            loop.run()
        except Abandon:
            pass
    finally:
        triggers.close()
        for player in (midi, loop.live_notes):
            if player is not None:
                player.close(finish=not loop.stopping.is_set())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with loop.lock:
            loop.state.save(loop.state_path)
            summary = f"made {loop.state.made}, failed {loop.state.failed} in all"
        osc.send("/status", "stopped", loop.made_here)
        _log(f"stopped: {loop.made_here} artwork(s) tried this time; {summary}")
