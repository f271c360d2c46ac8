"""The melody follows the theme's mood: mode, tempo and register, read back from the MIDI file with mido;
explicit options win; melody.json says which words were read; pentatonic melodies circle their final."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest

from synesthesia.components import RenderContext
from synesthesia_midi import melody as melody_mod
from synesthesia_midi.mood import read_mood
from synesthesia_midi.options import MidiOptions
from synesthesia_midi.prosody import analyze
from synesthesia_midi.render import render

JING_YE_SI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
LAMB = ("Little Lamb who made thee?\nDost thou know who made thee,\nGave thee life and bid thee feed\n"
        "By the stream and o'er the mead;")
QINGMING = "清明时节雨纷纷\n路上行人欲断魂\n借问酒家何处有\n牧童遥指杏花村"
DENGGUANQUE = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"


def render_theme(tmp_path: Path, text: str, theme: str, seed: int = 3, **options) -> tuple[dict, dict]:
    out = tmp_path / f"midi-{abs(hash((theme, text, seed, tuple(sorted(options.items())))))}"
    render(RenderContext(text=text, form="", language=None, theme=theme, seed=seed, out_dir=out,
                         options=MidiOptions(audio=False, **options), manifest={}))
    midi = mido.MidiFile(out / "melody.mid", charset="utf-8")
    conductor = {m.type: m for m in midi.tracks[0] if m.is_meta}
    melody_track = next(t for t in midi.tracks if t.name == "Melody")
    pitches = [m.note for m in melody_track if m.type == "note_on" and m.velocity > 0]
    parsed = {"bpm": round(mido.tempo2bpm(conductor["set_tempo"].tempo)), "key": conductor["key_signature"].key,
              "pitches": pitches}
    return parsed, json.loads((out / "melody.json").read_text(encoding="utf-8"))


def test_mood_lexicon_reads_chinese_and_english_themes():
    assert (read_mood("离别").mood, read_mood("离别").zh_mode) == ("sorrow", "yu")
    assert (read_mood("grief").mood, read_mood("grief").en_mode) == ("sorrow", "minor")
    assert (read_mood("spring joy").mood, read_mood("spring joy").zh_mode) == ("joy", "gong")
    assert read_mood("春").mood == "joy" and read_mood("边塞").mood == "heroic"
    assert read_mood("frontier battles").zh_mode == "zhi"  # plural read as its word
    assert read_mood("秋风").zh_mode == "shang"  # 商, the note of autumn
    # The theme decides even where the poem's words point elsewhere; the poem decides without a theme.
    farewell = read_mood("离别", JING_YE_SI)
    assert farewell.mood == "sorrow" and farewell.source == "theme" and farewell.theme_words == {"离别": "sorrow"}
    assert read_mood("", JING_YE_SI).mood == "longing" and read_mood("", JING_YE_SI).source == "text"
    quiet = read_mood("quantum lighthouse")
    assert (quiet.mood, quiet.source, quiet.zh_mode, quiet.en_mode) == ("neutral", "none", "zhi", "major")


@pytest.mark.parametrize("text,sad_key_suffix", [(JING_YE_SI, "m"), (LAMB, "m")])
def test_a_sad_and_a_joyful_theme_give_different_mode_tempo_and_register(tmp_path, text, sad_key_suffix):
    sad, sad_json = render_theme(tmp_path, text, "grief and farewell")
    joy, joy_json = render_theme(tmp_path, text, "spring joy")
    assert sad_json["mood"]["mood"] == "sorrow" and joy_json["mood"]["mood"] == "joy"
    assert sad["key"].endswith(sad_key_suffix) and not joy["key"].endswith("m")  # minor/yu vs major/gong
    assert sad["bpm"] < joy["bpm"]
    assert sad_json["mode"] in ("yu", "minor") and joy_json["mode"] in ("gong", "major")
    assert sum(sad["pitches"]) / len(sad["pitches"]) < sum(joy["pitches"]) / len(joy["pitches"])
    assert sad_json["mood"]["chose"]["register_semitones"] < 0 < joy_json["mood"]["chose"]["register_semitones"]
    # The words the mood was read from are named.
    assert sad_json["mood"]["theme_words"] == {"grief": "sorrow", "farewell": "sorrow"}
    assert sad_json["mood"]["read_from"] == "theme" and sad_json["mood"]["overridden_by_options"] == []


def test_explicit_options_win_over_the_mood(tmp_path):
    parsed, summary = render_theme(tmp_path, JING_YE_SI, "grief", mode="gong", tempo=120, key="D")
    assert parsed["bpm"] == 120 and parsed["key"] == "D"  # gong on D: D major, although grief asks for yu
    assert summary["mode"] == "gong" and summary["mood"]["asked"]["mode"] == "yu"
    assert summary["mood"]["overridden_by_options"] == ["mode", "tempo"]
    assert {(p - 62) % 12 for p in parsed["pitches"]} <= set(melody_mod.MODES["gong"])


def test_pentatonic_strong_beats_circle_the_final_not_its_fifth():
    fifths = strong = 0
    for text in (QINGMING, DENGGUANQUE):
        prosody = analyze(text)
        for seed in range(4):
            melody = melody_mod.compose(prosody, text, seed=seed, mode="zhi")
            template = melody.template
            for note in melody.notes:
                if note.strong:
                    strong += 1
                    fifths += (note.pitch - template.tonic_midi) % 12 == 7
            # Every bar's anchors come from the mode's own pentatonic scale.
            assert all(set(tones) <= set(template.scale) for _root, tones in melody.chords)
    assert strong > 50 and fifths / strong < 0.3
    home, away = melody_mod.pentatonic_areas("gong")
    assert home == (0, 2, 9) and away == (4, 7, 9)
