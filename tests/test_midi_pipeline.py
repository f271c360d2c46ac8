"""The midi renderer inside a real pipeline run (the CLI in a subprocess): poem, .mid and .wav for an
English draft, then for a Chinese poem the artist puts in its place (``synesthesia render``)."""

from __future__ import annotations

import json
import wave

import pytest

from synesthesia_midi.midi_file import read_midi
from synesthesia_midi.prosody import analyze
from tests.conftest import run_cli

CHINESE = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n"


def _lyrics(path):
    midi = read_midi(path)
    return [m.text for t in midi.tracks for m in t if m.type == "lyrics"]


def _wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


@pytest.mark.slow
def test_pipeline_writes_poem_midi_and_wav_for_english_then_chinese(tiny_checkpoint, tmp_path):
    env = {"SYNESTHESIA_PLUGINS": "transformer,poetry,midi"}
    run_dir = tmp_path / "run"
    result = run_cli("run", f"hydra.run.dir={run_dir}", f"model.name={tiny_checkpoint}", "form=free",
                     "pipeline.renderers=[midi]", "generation.candidates=1", "generation.max_attempts=1",
                     "generation.max_new_tokens=40", "renderer.midi.audio_engine=builtin", "seed=3", "theme=grief",
                     env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    artwork = run_dir / "artwork"
    manifest = json.loads((artwork / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["renderers"]["midi"]["error"] is None
    assert {"midi/melody.mid", "midi/melody.wav"} <= set(manifest["files"])
    text = (artwork / "text.txt").read_text(encoding="utf-8")
    syllables = analyze(text).syllables
    assert len(_lyrics(artwork / "midi" / "melody.mid")) == len(syllables) > 0
    english_wav = _wav_seconds(artwork / "midi" / "melody.wav")
    assert english_wav > 1.0

    (artwork / "text.txt").write_text(CHINESE, encoding="utf-8")
    result = run_cli("render", str(run_dir), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lyrics = _lyrics(artwork / "midi" / "melody.mid")
    assert "".join(lyrics) == "白日依山尽黄河入海流欲穷千里目更上一层楼"
    summary = json.loads((artwork / "midi" / "melody.json").read_text(encoding="utf-8"))
    assert summary["language"] == "zh" and summary["mode"] in ("gong", "shang", "zhi", "yu")
    # The artist's theme reaches the renderer on a re-render too: grief asks for yu, whatever the new text says.
    assert summary["mood"]["theme"] == "grief" and summary["mood"]["mood"] == "sorrow" and summary["mode"] == "yu"
    assert _wav_seconds(artwork / "midi" / "melody.wav") > read_midi(artwork / "midi" / "melody.mid").length
    # The English revision is kept beside the new one.
    kept = run_dir / "revisions" / "rev-001" / "midi" / "melody.mid"
    assert kept.exists() and len(_lyrics(kept)) == len(syllables)
