"""What the midi renderer writes: a MIDI file mido and music21 read back, and WAVs you can hear."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from synesthesia.components import RenderContext
from synesthesia_midi import audio
from synesthesia_midi.melody import Melody, Note, Template
from synesthesia_midi.midi_file import read_midi, write_midi
from synesthesia_midi.options import MidiOptions
from synesthesia_midi.prosody import analyze
from synesthesia_midi.render import render

JINGYESI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
LAMB = ("Little Lamb who made thee?\nDost thou know who made thee,\nGave thee life and bid thee feed\n"
        "By the stream and o'er the mead;")


def _context(tmp_path: Path, text: str, **options) -> RenderContext:
    return RenderContext(text=text, form="", language=None, theme="", seed=11, out_dir=tmp_path / "midi",
                         options=MidiOptions(**options), manifest={})


def _lyrics_and_notes(path: Path):
    midi = read_midi(path)
    melody_track = next(t for t in midi.tracks if t.name == "Melody")
    lyrics = [m.text for m in melody_track if m.type == "lyrics"]
    notes = [m for m in melody_track if m.type == "note_on" and m.velocity > 0]
    return midi, lyrics, notes


@pytest.mark.parametrize("text,language", [(JINGYESI, "zh"), (LAMB, "en")])
def test_midi_reads_back_with_one_note_per_syllable_lyrics_tempo_key_and_metre(tmp_path, text, language):
    written = render(_context(tmp_path, text, audio=False, accompaniment="chords", tempo=90, key="D"))
    midi_path = tmp_path / "midi" / "melody.mid"
    assert midi_path in written and not (tmp_path / "midi" / "melody.wav").exists()
    summary = json.loads((tmp_path / "midi" / "melody.json").read_text(encoding="utf-8"))
    prosody = analyze(text)
    midi, lyrics, notes = _lyrics_and_notes(midi_path)
    assert len(notes) == len(prosody.syllables) == summary["syllables"]
    assert lyrics == [s.lyric for s in prosody.syllables]
    if language == "zh":
        assert "".join(lyrics) == "床前明月光疑是地上霜举头望明月低头思故乡"
    else:
        assert "".join(lyrics).replace("-", "").startswith("LittleLambwhomadethee")
    meta = {m.type: m for m in midi.tracks[0] if m.is_meta}
    assert round(60_000_000 / meta["set_tempo"].tempo) == 90
    assert meta["key_signature"].key == summary["key"] and summary["key"].rstrip("m") == "D"
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (4, 4)
    assert {m.channel for t in midi.tracks for m in t if m.type == "note_on"} == {0, 1}  # melody + chords

    from music21 import converter

    score = converter.parse(str(midi_path))
    assert len(score.parts) == 2
    sung = list(score.parts[0].stripTies().flatten().notes)  # notes across bar lines come back tied
    assert len(sung) == len(prosody.syllables)
    assert [n.pitch.midi for n in sung] == [m.note for m in notes]
    assert score.flatten().getElementsByClass("TimeSignature")[0].ratioString == "4/4"


def test_without_accompaniment_there_is_one_sounding_track(tmp_path):
    render(_context(tmp_path, LAMB, audio=False, accompaniment="none", instrument=40))
    midi = read_midi(tmp_path / "midi" / "melody.mid")
    assert [t.name for t in midi.tracks] == ["Synesthesia", "Melody"]
    assert [m.program for t in midi.tracks for m in t if m.type == "program_change"] == [40]


def _a4_melody() -> Melody:
    """One A4 (440 Hz) lasting two beats at 60 bpm: two seconds of sound."""
    template = Template(language="en", mode="major", tonic_midi=69, beats_per_bar=4, tempo_bpm=60.0, mood=0)
    return Melody(template, [Note(onset=0, duration=4, pitch=69)], chords=[(0, (0, 4, 7))], total_units=4)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        frames = handle.readframes(handle.getnframes())
    assert width == 2
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64).reshape(-1, channels).mean(axis=1) / 32768
    return samples, rate


def _dominant_frequency(samples: np.ndarray, rate: int) -> float:
    window = samples[int(0.1 * rate): int(1.5 * rate)]  # inside the held note
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.fft.rfftfreq(len(window), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("engine", ["builtin", "fluidsynth"])
def test_a4_renders_audible_at_440_hz_for_the_right_length(tmp_path, engine):
    if engine == "fluidsynth" and not (audio.fluidsynth_available() and audio.find_soundfont()):
        pytest.skip("fluidsynth or a GM soundfont is not installed (scripts/bootstrap.sh installs both)")
    midi_path = write_midi(_a4_melody(), tmp_path / "a4.mid", program=0)
    wav_path = tmp_path / f"a4-{engine}.wav"
    used = audio.render_audio(midi_path, wav_path, engine=engine, gain=1.0)
    assert used == engine
    samples, rate = _read_wav(wav_path)
    assert rate == 44100
    duration = len(samples) / rate
    assert 2.0 <= duration <= 6.0  # the note, plus release and reverb tail
    assert float(np.abs(samples).max()) > 0.8  # normalised to -1 dBFS: clearly audible
    held = float(np.sqrt(np.mean(samples[int(0.05 * rate): int(0.55 * rate)] ** 2)))
    assert held > 0.05
    assert abs(_dominant_frequency(samples, rate) - 440.0) < 4.0
    # The note really ends: a second after it was released, the sound has died away.
    after = samples[int(3.0 * rate):]
    assert len(after) == 0 or float(np.sqrt(np.mean(after ** 2))) < 0.1 * held


def test_renderer_writes_wav_matching_the_midi_length(tmp_path):
    written = render(_context(tmp_path, JINGYESI, audio_engine="builtin", accompaniment="drone"))
    wav = tmp_path / "midi" / "melody.wav"
    assert wav in written
    samples, rate = _read_wav(wav)
    midi_length = read_midi(tmp_path / "midi" / "melody.mid").length
    assert midi_length < len(samples) / rate <= midi_length + 1.5
    assert float(np.sqrt(np.mean(samples ** 2))) > 0.02
    assert json.loads((tmp_path / "midi" / "melody.json").read_text(encoding="utf-8"))["audio_engine"] == "builtin"


@pytest.mark.parametrize(
    "options,field",
    [
        ({"instrument": 128}, "instrument"),
        ({"tempo": 5}, "tempo"),
        ({"key": "H#"}, "key"),
        ({"mode": "lydian"}, "mode"),
        ({"accompaniment": "orchestra"}, "accompaniment"),
        ({"gain": 0}, "gain"),
        ({"soundfont": "/no/such/font.sf2"}, "soundfont"),
        ({"tempi": 90}, "tempi"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ValidationError) as caught:
        MidiOptions(**options)
    assert caught.value.errors()[0]["loc"] == (field,)
    assert field in str(caught.value)


def test_bad_options_through_the_pipeline_name_renderer_and_field():
    from synesthesia.errors import ConfigError
    from synesthesia.plugins import get_registry, validate_options

    registry = get_registry()
    renderer = registry.renderers()["midi"]
    assert isinstance(validate_options(renderer, {"key": "F#", "tempo": 80}), MidiOptions)
    with pytest.raises(ConfigError, match=r"renderer\.midi\.key"):
        validate_options(renderer, {"key": "X"})


def test_explicit_missing_soundfont_and_unknown_engine_are_clear_errors(tmp_path):
    from synesthesia.errors import ConfigError

    midi_path = write_midi(_a4_melody(), tmp_path / "a4.mid", program=0)
    with pytest.raises(ConfigError, match="audio_engine"):
        audio.render_audio(midi_path, tmp_path / "x.wav", engine="timidity")
    with pytest.raises(ConfigError, match="soundfont"):
        audio.render_audio(midi_path, tmp_path / "x.wav", engine="fluidsynth", soundfont=str(tmp_path / "none.sf2"))
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_fluidsynth_render_of_a_poem_is_audible(tmp_path):
    written = render(_context(tmp_path, LAMB, audio_engine="fluidsynth", gain=0.8))
    samples, rate = _read_wav(tmp_path / "midi" / "melody.wav")
    assert tmp_path / "midi" / "melody.wav" in written
    assert float(np.sqrt(np.mean(samples ** 2))) > 0.01
    midi_length = read_midi(tmp_path / "midi" / "melody.mid").length
    # FluidSynth renders ~5 s of near-silent release and reverb past the last note; the tail option keeps 1.5 s.
    assert midi_length + 1.5 - 0.01 <= len(samples) / rate <= midi_length + 1.5 + 0.01
    assert float(np.abs(samples[-int(0.01 * rate):]).max()) < 0.01, "faded out, no click at the cut"


@pytest.mark.parametrize("tail", [0.0, 0.25, 3.0])
def test_the_wav_ends_tail_seconds_after_the_midi(tmp_path, tail):
    render(_context(tmp_path, JINGYESI, audio_engine="builtin", accompaniment="none", tail=tail))
    samples, rate = _read_wav(tmp_path / "midi" / "melody.wav")
    midi_length = read_midi(tmp_path / "midi" / "melody.mid").length
    # The built-in synth renders 1.2 s past the MIDI (its release and reverb): a longer tail keeps just that.
    assert abs(len(samples) / rate - (midi_length + min(tail, 1.2))) < 0.02, (len(samples) / rate, midi_length)
