"""Render a MIDI file to a WAV you can hear.

FluidSynth with a General MIDI soundfont when both are installed (Debian ``fluidsynth`` and
``timgm6mb-soundfont`` or ``fluid-soundfont-gm``); otherwise a small built-in synthesizer written with
torch: additive voices (a few harmonics per GM instrument family), ADSR envelopes and a touch of
convolution reverb, written with the standard library's ``wave`` module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.fileio import atomic_path

SAMPLE_RATE = 44100
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
# Best first: the larger FluidR3 font sounds better than the small TimGM6mb one.
SOUNDFONT_PREFERENCE = ("FluidR3_GM.sf2", "default-GM.sf2", "TimGM6mb.sf2")


def find_soundfont(explicit: str | Path | None = None) -> Path | None:
    """The soundfont to use: ``explicit`` (must exist), else the best General MIDI font installed."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"soundfont: {path} does not exist; give the path of a .sf2 file or leave it empty")
        return path
    for folder in SOUNDFONT_DIRS:
        for name in SOUNDFONT_PREFERENCE:
            candidate = Path(folder) / name
            if candidate.is_file():
                return candidate.resolve()
        found = sorted(Path(folder).glob("*.sf2")) if Path(folder).is_dir() else []
        if found:
            return found[0]
    return None


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to kill it when its parent dies (kill -9 of a run), so a
    synthesizer never outlives the process that started it. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None


def render_with_fluidsynth(midi_path: Path, wav_path: Path, soundfont: Path, *, gain: float = 0.8,
                           sample_rate: int = SAMPLE_RATE, timeout: float = 120) -> Path:
    """``fluidsynth -ni -F out.wav -r RATE -g GAIN font.sf2 in.mid`` into a temp file, then rename."""
    wav_path = Path(wav_path)
    with atomic_path(wav_path) as tmp:
        command = ["fluidsynth", "-ni", "-q", "-T", "wav", "-F", str(tmp), "-r", str(sample_rate), "-g", str(gain),
                   str(soundfont), str(midi_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                preexec_fn=_die_with_parent)
        if result.returncode != 0 or os.path.getsize(tmp) <= 44:
            raise SynesthesiaError(
                f"fluidsynth could not render {midi_path}: {(result.stderr or result.stdout).strip()[:200]}; "
                "set the midi renderer option audio_engine=builtin to use the built-in synthesizer"
            )
    return wav_path


# --------------------------------------------------------------------------------------------------
# Built-in synthesizer


@dataclass(frozen=True)
class Voice:
    harmonics: tuple[float, ...]  # amplitude of partial 1, 2, 3, ...
    attack: float  # seconds
    decay: float
    sustain: float  # level 0..1
    release: float
    vibrato: float = 0.0  # depth in semitones


VOICES = {
    "piano": Voice((1.0, 0.45, 0.25, 0.12, 0.06, 0.03), 0.005, 0.6, 0.35, 0.25),
    "strings": Voice((1.0, 0.6, 0.4, 0.25, 0.15, 0.1), 0.12, 0.2, 0.85, 0.4, 0.08),
    "organ": Voice((1.0, 0.7, 0.0, 0.5, 0.0, 0.3), 0.02, 0.05, 1.0, 0.08),
    "flute": Voice((1.0, 0.18, 0.06), 0.06, 0.1, 0.9, 0.15, 0.1),
    "plucked": Voice((1.0, 0.5, 0.3, 0.2, 0.1), 0.003, 0.35, 0.15, 0.2),
}


def voice_for_program(program: int) -> Voice:
    """A rough timbre per General MIDI family."""
    if 16 <= program <= 23:
        return VOICES["organ"]
    if 24 <= program <= 31 or 104 <= program <= 111:  # guitars, ethnic plucked (koto, shamisen, ...)
        return VOICES["plucked"]
    if 40 <= program <= 55 or 56 <= program <= 71:  # strings, ensembles, brass, reeds
        return VOICES["strings"]
    if 72 <= program <= 79:  # pipes, flutes, shakuhachi
        return VOICES["flute"]
    return VOICES["piano"]


def synthesize(notes, programs: dict[int, int], *, sample_rate: int = SAMPLE_RATE, reverb: float = 0.18,
               gain: float = 0.8, seed: int = 0):
    """Mono float32 samples (a torch tensor) for (start s, end s, pitch, velocity, channel) notes."""
    import torch

    # Many small tensor ops: one thread is far faster than a pool fighting other processes for cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _synthesize(notes, programs, sample_rate=sample_rate, reverb=reverb, gain=gain, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _synthesize(notes, programs, *, sample_rate: int, reverb: float, gain: float, seed: int):
    import torch

    tail = 1.2
    table_size = 4096
    grid = torch.arange(table_size, dtype=torch.float64) / table_size
    tables = {}
    length = max((end for _s, end, *_ in notes), default=0.0) + tail
    out = torch.zeros(int(length * sample_rate) + 1, dtype=torch.float32)
    for start, end, pitch, velocity, channel in notes:
        voice = voice_for_program(programs.get(channel, 0))
        frequency = 440.0 * 2 ** ((pitch - 69) / 12)
        # One period of the voice's waveform, looked up by phase: far cheaper than a sine per partial.
        key = (voice, frequency * len(voice.harmonics) >= sample_rate / 2)
        if key not in tables:
            partials = [(k, a) for k, a in enumerate(voice.harmonics, start=1)
                        if a and (not key[1] or frequency * k < sample_rate / 2)]
            table = sum(a * torch.sin(2 * torch.pi * k * grid) for k, a in partials)
            tables[key] = (table / sum(a for _k, a in partials)).to(torch.float32)
        held = max(end - start, 0.02)
        n = int((held + voice.release) * sample_rate)
        t = torch.arange(n, dtype=torch.float64) / sample_rate
        # A slow vibrato that fades in, so long notes breathe.
        bend = voice.vibrato * torch.sin(2 * torch.pi * 5.0 * t) * torch.clamp(t / 0.4, max=1.0)
        cycles = torch.cumsum(frequency * 2 ** (bend / 12), 0) / sample_rate
        index = ((cycles % 1.0) * table_size).long().clamp_(0, table_size - 1)
        wave_ = tables[key][index]
        begin = int(start * sample_rate)
        envelope = _adsr(t.to(torch.float32), held, voice)
        out[begin: begin + n] += (wave_ * envelope * (velocity / 127))[: out.numel() - begin]
    if reverb > 0:
        out = _reverb(out, sample_rate, reverb, seed)
    peak = out.abs().max().item()
    if peak > 0:
        out = out * (min(0.97, 0.9 * gain / 0.8) / peak)
    return out


def _adsr(t, held: float, voice: Voice):
    import torch

    a, d, s, r = voice.attack, voice.decay, voice.sustain, voice.release
    attack = torch.clamp(t / a, max=1.0)
    decay = s + (1 - s) * torch.exp(-torch.clamp(t - a, min=0) / max(d, 1e-3) * 3)
    envelope = torch.where(t < a, attack, decay)
    level_at_release = float(s + (1 - s) * torch.exp(torch.tensor(-max(held - a, 0) / max(d, 1e-3) * 3)))
    release = level_at_release * torch.clamp(1 - (t - held) / r, min=0.0)
    return torch.where(t < held, envelope, release)


def _reverb(samples, sample_rate: int, wet: float, seed: int):
    """Convolve with a second of exponentially decaying noise (a plain room), mixed ``wet`` parts in."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    n = int(0.9 * sample_rate)
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    impulse = torch.randn(n, generator=generator) * torch.exp(-t / 0.25)
    impulse[: int(0.02 * sample_rate)] = 0  # pre-delay
    impulse /= impulse.abs().sum().clamp(min=1e-9) / 8
    size = samples.numel() + n
    spectrum = torch.fft.rfft(samples, size) * torch.fft.rfft(impulse, size)
    wet_signal = torch.fft.irfft(spectrum, size)[: samples.numel()]
    return (1 - wet) * samples + wet * wet_signal


def write_wav(samples, path: Path, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono PCM via ``wave``, atomically."""
    import torch

    pcm = (samples.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
    path = Path(path)
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm)
    return path


def render_builtin(midi_path: Path, wav_path: Path, *, gain: float = 0.8, sample_rate: int = SAMPLE_RATE) -> Path:
    from .midi_file import midi_notes, midi_programs

    samples = synthesize(midi_notes(midi_path), midi_programs(midi_path), sample_rate=sample_rate, gain=gain)
    return write_wav(samples, wav_path, sample_rate)


def finish_wav(path: Path, *, peak: float | None = 0.89, keep_seconds: float | None = None,
               fade_seconds: float = 0.3) -> float:
    """One pass over a rendered 16-bit WAV: cut it after ``keep_seconds`` (the last ``fade_seconds`` before the
    cut faded out, so it ends without a click; None keeps it whole), then scale it so its loudest sample sits
    at ``peak`` (-1 dBFS: small soundfonts render quietly; None leaves the level). Returns the factor applied."""
    import numpy as np

    with wave.open(str(path), "rb") as handle:
        params = handle.getparams()
        frames = handle.readframes(params.nframes)
    if params.sampwidth != 2:
        return 1.0
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64).reshape(-1, params.nchannels)  # [T, C]
    if keep_seconds is not None and keep_seconds * params.framerate < len(samples):
        samples = samples[: max(1, int(round(keep_seconds * params.framerate)))]
        fade = min(len(samples), int(fade_seconds * params.framerate))
        if fade > 0:
            samples[-fade:] *= np.linspace(1.0, 0.0, fade)[:, None]
    loudest = float(np.abs(samples).max(initial=0.0)) / 32768
    factor = peak / loudest if peak is not None and loudest > 0 else 1.0
    scaled = np.clip(np.round(samples * factor), -32768, 32767).astype("<i2").tobytes()
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as handle:
        handle.setparams(params._replace(nframes=len(samples)))
        handle.writeframes(scaled)
    return factor


def render_audio(midi_path: Path, wav_path: Path, *, engine: str = "auto", soundfont: str | None = None,
                 gain: float = 0.8, sample_rate: int = SAMPLE_RATE, normalize: bool = True,
                 tail: float | None = None) -> str:
    """Render and return the engine used: ``fluidsynth`` or ``builtin``. With ``normalize`` the result
    peaks at -1 dBFS whatever the engine and gain (``gain`` then only shapes FluidSynth's mix). ``tail``
    (seconds) cuts the WAV that long after the MIDI ends, faded out (FluidSynth renders ~5 s of near-silent
    release and reverb past the last note); None keeps what the engine rendered."""
    if engine not in ("auto", "fluidsynth", "builtin"):
        raise ConfigError(f"audio_engine: {engine!r} is not one of auto, fluidsynth, builtin")
    used = None
    if engine in ("auto", "fluidsynth"):
        font = find_soundfont(soundfont)
        if fluidsynth_available() and font is not None:
            render_with_fluidsynth(midi_path, wav_path, font, gain=gain, sample_rate=sample_rate)
            used = "fluidsynth"
        elif engine == "fluidsynth":
            raise ConfigError(
                "audio_engine: fluidsynth needs the fluidsynth program and a General MIDI soundfont; "
                "install them (apt-get install fluidsynth timgm6mb-soundfont) or use audio_engine=builtin"
            )
    if used is None:
        render_builtin(midi_path, wav_path, gain=gain, sample_rate=sample_rate)
        used = "builtin"
    keep = None
    if tail is not None:
        from .midi_file import read_midi

        keep = read_midi(midi_path).length + tail
    if keep is not None or (normalize and used == "fluidsynth"):  # the built-in synth sets its own peak
        finish_wav(wav_path, peak=0.89 if normalize and used == "fluidsynth" else None, keep_seconds=keep,
                   fade_seconds=min(0.3, tail or 0.0))
    return used
