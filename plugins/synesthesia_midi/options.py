"""Options of the ``midi`` renderer (pydantic only, so importing this stays cheap)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MidiOptions(BaseModel):
    """Every option has a default; a bad value is reported with its field name before any work starts."""

    model_config = ConfigDict(extra="forbid")

    instrument: int | None = Field(None, ge=0, le=127, description="General MIDI program 0-127 "
                                   "(default: 73 flute for Chinese, 0 piano for English)")
    tempo: float | None = Field(None, ge=30, le=300, description="beats per minute (default: from form and mood)")
    key: str | None = Field(None, description="tonic note name such as C, F#, Bb (default: chosen by seed)")
    mode: Literal["auto", "major", "minor", "gong", "shang", "zhi", "yu"] = "auto"
    accompaniment: Literal["auto", "drone", "chords", "none"] = "auto"
    melisma: bool = Field(False, description="let long syllables carry two notes (tone-shaped for Chinese)")
    pitch_model: Literal["stats", "gpt"] = Field(
        "stats", description="corpus interval statistics, or the small melody GPT trained by our core")
    seed: int | None = Field(None, description="melody seed (default: the artwork's seed)")
    audio: bool = Field(True, description="also render melody.wav")
    audio_engine: Literal["auto", "fluidsynth", "builtin"] = "auto"
    soundfont: str | None = Field(None, description="path of a .sf2 General MIDI soundfont "
                                  "(default: the installed one)")
    gain: float = Field(0.8, gt=0, le=5, description="output gain (FluidSynth -g; the built-in synth scales its peak)")
    normalize: bool = Field(True, description="scale the WAV to peak at -1 dBFS (small soundfonts render quietly)")
    tail: float = Field(1.5, ge=0, le=10, description="seconds of sound kept after the last note (release and "
                        "reverb), faded out; the WAV is that much longer than the MIDI")

    @field_validator("key")
    @classmethod
    def _known_note(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from .melody import parse_tonic  # noqa: PLC0415  (only when a key is given)

        try:
            parse_tonic(value)
        except Exception as error:  # ConfigError -> pydantic's own error, which names the field
            raise ValueError(str(error).split(": ", 1)[-1]) from None
        return value.strip()

    @field_validator("soundfont")
    @classmethod
    def _soundfont_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).expanduser().is_file():
            raise ValueError(f"{value} does not exist; give the path of a .sf2 file or leave it empty")
        return value or None
