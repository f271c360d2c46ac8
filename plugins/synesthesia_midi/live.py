"""Play a melody to a MIDI output port, for installations (mido with the python-rtmidi backend).

On a machine without sound hardware a JACK server with the dummy driver (``jackd -d dummy``) provides
MIDI ports; choose the rtmidi API with ``api="UNIX_JACK"`` (or ``LINUX_ALSA``), or the environment
variable ``SYNESTHESIA_MIDI_API``. ``SYNESTHESIA_MIDI_PORT`` names the port the ``artwork_created`` hook
plays each new artwork to.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from synesthesia.errors import ConfigError, SynesthesiaError

APIS = ("UNIX_JACK", "LINUX_ALSA", "MACOSX_CORE", "WINDOWS_MM")


def backend(api: str | None = None):
    """The mido rtmidi backend, pinned to one rtmidi API when asked."""
    import mido

    api = api or os.environ.get("SYNESTHESIA_MIDI_API") or None
    if api is not None and api not in APIS:
        raise ConfigError(f"api: {api!r} is not one of {', '.join(APIS)}")
    name = "mido.backends.rtmidi" + (f"/{api}" if api else "")
    try:
        return mido.Backend(name, load=True)
    except ImportError as error:
        raise SynesthesiaError(
            f"MIDI output needs python-rtmidi ({error}); install it with: pip install python-rtmidi"
        ) from error


@contextlib.contextmanager
def _quiet_c_stderr():
    """Silence file descriptor 2 (what C libraries write to) for the block; Python's own errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def output_names(api: str | None = None) -> list[str]:
    """The MIDI output ports; a MIDI system that cannot start (no ALSA sequencer, no JACK server) is one line."""
    chosen = backend(api)
    try:
        with _quiet_c_stderr():  # ALSA's C library prints its own line before rtmidi raises
            return chosen.get_output_names()
    except Exception as error:  # rtmidi raises its own SystemError/RtMidiError, with no common base to name here
        raise SynesthesiaError(f"no MIDI system to send to ({' '.join(str(error).split())}); start JACK or ALSA's "
                               "sequencer and the synth, or set SYNESTHESIA_MIDI_API") from error


def _resolve_port(name: str, names: list[str]) -> str:
    if name in names:
        return name
    partial = [n for n in names if name in n]
    if len(partial) == 1:
        return partial[0]
    available = ", ".join(names) or "none"
    raise SynesthesiaError(
        f"MIDI port {name!r} not found (available: {available}); start the synth or pass another port"
    )


def play_to_port(midi_path: str | Path, port_name: str, *, api: str | None = None, speed: float = 1.0) -> int:
    """Send every channel message of the file to the port in real time (``speed`` > 1 plays faster).
    Returns the number of messages sent. All notes are silenced at the end, even on Ctrl-C."""
    from .midi_file import read_midi

    if speed <= 0:
        raise ConfigError(f"speed: {speed} must be positive")
    midi = read_midi(Path(midi_path))
    chosen = backend(api)
    target = _resolve_port(port_name, chosen.get_output_names())
    sent = 0
    with chosen.open_output(target) as port:
        try:
            start = time.perf_counter()
            due = 0.0
            for message in midi:
                due += message.time / speed
                if message.is_meta:
                    continue
                delay = due - (time.perf_counter() - start)
                if delay > 0:
                    time.sleep(delay)
                port.send(message)
                sent += 1
        finally:
            port.reset()  # all notes off, controllers reset
    return sent
