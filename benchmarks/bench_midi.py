"""How well do our melodies fit their words, and how much do they sound like real folk tunes?

Poems (typed in below, all public domain): six Tang quatrains and five English stanzas, each set with
SEEDS seeds. Systems, each writing a real MIDI file that is parsed back for the figures:

- ``random``: the same key and scale, one quarter note per syllable, a half note at line ends, pitches
  uniformly random in the scale and range (a random-in-scale baseline, no template).
- ``template+random``: our rhythm template, pitches uniformly random in scale (isolates the pitch choice).
- ``ours``: the template plus constrained beam search over corpus statistics (the renderer's default).
- ``ours (gpt)``: the same search scored by the small melody GPT trained with our core (``pitch_model=gpt``).
- ``ours, <mode>``: Tang only, every poem forced into one pentatonic mode (the mood picks the mode otherwise;
  these rows show what each mode costs or gains, e.g. how often music21 hears the key it is written in).
- ``corpus``: held-out folk tunes (every tenth Essen tune, never counted into the statistics) compared
  with the other held-out tunes, as a reference for PD/DD/MD. No words, so word metrics are blank.

Figures:
- coverage: syllables that got a note with their lyric (lyric events read back from the MIDI / syllables).
- stress@strong: stressed syllables (CMU stress; 2nd/4th/6th and last character in Chinese lines) whose
  note starts on a strong beat (beats 1 and 3 in 4/4, beat 1 in 3/4).
- tone: Chinese syllable pairs whose Mandarin tones ask for a direction (see melody.expected_direction)
  where the melody moves that way.
- in-scale: notes whose pitch class belongs to the requested mode.
- cadence: line-final notes on the tonic or dominant, stanza-final notes on the tonic.
- PD / DD: TeleMelody's pitch- and duration-distribution overlap (sum of bin-wise minima of two
  normalised histograms), between each melody and the pooled held-out tunes of its family (Han Chinese
  songs for Chinese poems, German folk songs for English). TeleMelody's pitch histogram has a bin per
  MIDI pitch over key-normalised songs; here a bin per semitone above or below each tune's final note
  (-12..24), so register counts as in theirs. PD-pc folds that into the 12 pitch classes above the final
  (scale-degree usage only). Duration bins are note lengths in quarter notes. Higher is better.
- MD: TeleMelody's melody distance: pitch sampled every eighth note, mean removed, DTW distance (|a-b|
  per step) divided by the path length, averaged over MD_TUNES held-out tunes; first 64 samples. Lower
  is better.
- key: music21's key analysis (Krumhansl) of the MIDI file names the melody's key: tonic and major/minor
  (for the pentatonic modes, the key music21 finds in most held-out Han songs of that mode:
  ``melody.MODE_KEY``, e.g. a zhi tune on G is in C major).

Run: ``.venv/bin/python benchmarks/bench_midi.py`` (about three minutes on a shared CPU; parses some music21
corpus files).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synesthesia_midi import melody as melody_mod
from synesthesia_midi.corpus_stats import is_held_out
from synesthesia_midi.melody import Melody, Note, compose
from synesthesia_midi.melody_model import MODEL_DIR
from synesthesia_midi.midi_file import TICKS_PER_BEAT, read_midi, write_midi
from synesthesia_midi.prosody import analyze

TANG = {
    "登鹳雀楼": "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
    "静夜思": "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
    "春晓": "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。",
    "江雪": "千山鸟飞绝，万径人踪灭。\n孤舟蓑笠翁，独钓寒江雪。",
    "清明": "清明时节雨纷纷，路上行人欲断魂。\n借问酒家何处有，牧童遥指杏花村。",
    "早发白帝城": "朝辞白帝彩云间，千里江陵一日还。\n两岸猿声啼不住，轻舟已过万重山。",
}
ENGLISH = {
    "Sonnet 18": "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
                 "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;",
    "The Lamb": "Little Lamb who made thee?\nDost thou know who made thee,\nGave thee life and bid thee feed\n"
                "By the stream and o'er the mead;",
    "Daffodils": "I wandered lonely as a cloud\nThat floats on high o'er vales and hills,\n"
                 "When all at once I saw a crowd,\nA host, of golden daffodils;",
    "Because I could not stop": "Because I could not stop for Death,\nHe kindly stopped for me;\n"
                                "The carriage held but just ourselves\nAnd Immortality.",
    "The Tyger": "Tyger Tyger, burning bright,\nIn the forests of the night;\nWhat immortal hand or eye,\n"
                 "Could frame thy fearful symmetry?",
}
SEEDS = (0, 1, 2, 3, 4)
HELD_OUT = {"zh": "essenFolksong/han1", "en": "essenFolksong/erk10"}
N_HELD_OUT = 30
MD_TUNES = 10
MD_SAMPLES = 64


# --------------------------------------------------------------------------------------------------
# Systems


def random_pitches(melody: Melody, rng: random.Random) -> None:
    template = melody.template
    candidates = [p for p in range(template.tonic_midi - 5, template.tonic_midi + 15)
                  if (p - template.tonic_midi) % 12 in template.scale]
    for note in melody.notes:
        note.pitch = rng.choice(candidates)


def system_melody(system: str, text: str, seed: int) -> tuple[Melody, object]:
    prosody = analyze(text)
    if system.startswith("ours, "):
        return compose(prosody, text, seed=seed, mode=system.split(", ")[1]), prosody
    if system == "ours (gpt)":
        return compose(prosody, text, seed=seed, pitch_model="gpt"), prosody
    ours = compose(prosody, text, seed=seed)
    if system == "ours":
        return ours, prosody
    rng = random.Random(1000 + seed)
    if system == "template+random":
        random_pitches(ours, rng)
        return ours, prosody
    # random: quarter notes back to back, a half note at each line end, same key and scale
    notes, t = [], 0
    for syllable in prosody.syllables:
        length = 4 if syllable.line_end else 2
        notes.append(Note(t, length, syllable=syllable, strong=t % ours.template.strong_step == 0))
        t += length
    melody = Melody(ours.template, notes, ours.chords, t)
    random_pitches(melody, rng)
    return melody, prosody


# --------------------------------------------------------------------------------------------------
# Reading melodies back


def read_back(path: Path):
    """(onset in quarters, duration in quarters, pitch, lyric-or-None) of the melody track, and the metre."""
    midi = read_midi(path)
    numerator = next(m.numerator for t in midi.tracks for m in t if m.type == "time_signature")
    track = next(t for t in midi.tracks if t.name == "Melody")
    now, pending_lyric, starts, notes = 0, None, {}, []
    for message in track:
        now += message.time
        if message.type == "lyrics":
            pending_lyric = message.text
        elif message.type == "note_on" and message.velocity > 0:
            starts[message.note] = (now, pending_lyric)
            pending_lyric = None
        elif message.type in ("note_on", "note_off") and message.note in starts:
            start, lyric = starts.pop(message.note)
            notes.append((start / TICKS_PER_BEAT, (now - start) / TICKS_PER_BEAT, message.note, lyric))
    notes.sort()
    return notes, numerator


def corpus_tunes(name: str, limit: int) -> list[list[tuple[float, float, int]]]:
    """Held-out tunes of one Essen file: (onset, duration, pitch) in quarters, tonic = final note."""
    from music21 import converter, corpus

    path = corpus.getWork(name)
    text = Path(path).read_text(encoding="latin-1")
    chunks = text.split("\nX:")[1:]
    tunes = []
    for index, chunk in enumerate(chunks):
        if not is_held_out(index):
            continue
        score = converter.parse("X:" + chunk, format="abc")
        events = []
        for n in score.parts[0].stripTies().flatten().notes if score.parts else score.stripTies().flatten().notes:
            if float(n.quarterLength) > 0:
                events.append((float(n.offset), float(n.quarterLength), int(max(n.pitches).midi)))
        if len(events) >= 8:
            tunes.append(events)
        if len(tunes) >= limit:
            break
    return tunes


# --------------------------------------------------------------------------------------------------
# Metrics


def histogram(values, bins) -> np.ndarray:
    counts = np.array([sum(1 for v in values if v == b) for b in bins], dtype=float)
    return counts / counts.sum() if counts.sum() else counts


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.minimum(p, q).sum())


REGISTER_BINS = range(-12, 25)


def registers(events) -> list[int]:
    """Pitches as semitones from the tune's final note (TeleMelody's pitch histogram, keys made equal)."""
    final = events[-1][2]
    return [max(-12, min(24, e[2] - final)) for e in events]


DURATION_BINS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def quantized_durations(durations) -> list[float]:
    return [min(DURATION_BINS, key=lambda b: abs(b - d)) for d in durations]


def pitch_grid(events, tonic_pitch: int) -> np.ndarray:
    """Pitch every eighth note (TeleMelody samples the melody over time), mean removed."""
    samples = []
    for _onset, duration, pitch in events:
        samples.extend([pitch] * max(1, round(duration * 2)))
    grid = np.array(samples[:MD_SAMPLES], dtype=float)
    return grid - grid.mean()


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    n, m = len(a), len(b)
    cost = np.abs(a[:, None] - b[None, :])
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    steps = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        row_cost = cost[i - 1]
        for j in range(1, m + 1):
            choices = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            k = int(np.argmin(choices))
            acc[i, j] = row_cost[j - 1] + choices[k]
            steps[i, j] = 1 + (steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1])[k]
    return float(acc[n, m] / steps[n, m])


def key_matches(path: Path, template) -> bool:
    from music21 import converter

    score = converter.parse(str(path))
    found = score.parts[0].analyze("key") if score.parts else score.analyze("key")
    return (found.tonic.pitchClass, found.mode) == template.key


def evaluate(system: str, poems: dict[str, str], references: dict, out_dir: Path) -> dict[str, float]:
    rows = {k: [] for k in ("coverage", "stress", "tone", "scale", "cadence", "pd", "pc", "dd", "md", "key")}
    for title, text in poems.items():
        for seed in SEEDS:
            melody, prosody = system_melody(system, text, seed)
            template = melody.template
            family = "zh" if prosody.language == "zh" else "en"
            path = write_midi(melody, out_dir / f"{system}-{title}-{seed}.mid".replace(" ", "_"), program=0)
            notes, numerator = read_back(path)
            sung = [n for n in notes if n[3] is not None]
            syllables = prosody.syllables
            rows["coverage"].append(sum(1 for n in sung) / len(syllables)
                                    if [n[3] for n in sung] == [s.lyric for s in syllables] else 0.0)
            strong_step = 2.0 if numerator % 2 == 0 else float(numerator)
            stressed = [n for n, s in zip(sung, syllables) if s.stressed]
            rows["stress"].append(sum(1 for n in stressed if abs(n[0] / strong_step - round(n[0] / strong_step)) < 1e-6)
                                  / max(1, len(stressed)))
            if family == "zh":
                agree = total = 0
                for (a, sa), (b, sb) in zip(zip(sung, syllables), zip(sung[1:], syllables[1:])):
                    want = melody_mod.expected_direction(sa, sb)
                    if want:
                        total += 1
                        agree += (b[2] - a[2]) * want > 0
                rows["tone"].append(agree / max(1, total))
            rows["scale"].append(sum((n[2] - template.tonic_midi) % 12 in template.scale for n in notes) / len(notes))
            good = 0
            line_ends = [(n, s) for n, s in zip(sung, syllables) if s.line_end]
            for n, s in line_ends:
                degree = (n[2] - template.tonic_midi) % 12
                good += degree == 0 if (s.stanza_end or s is syllables[-1]) else degree in (0, 7)
            rows["cadence"].append(good / len(line_ends))
            degrees = [(n[2] - template.tonic_midi) % 12 for n in notes]
            rows["pc"].append(overlap(histogram(degrees, range(12)), references[family]["pc"]))
            rows["pd"].append(overlap(histogram(registers(notes), REGISTER_BINS), references[family]["pd"]))
            durations = quantized_durations(n[1] for n in notes)
            rows["dd"].append(overlap(histogram(durations, DURATION_BINS), references[family]["dd"]))
            grid = pitch_grid([(n[0], n[1], n[2]) for n in notes], template.tonic_midi)
            rows["md"].append(statistics.mean(dtw(grid, ref) for ref in references[family]["grids"][:MD_TUNES]))
            rows["key"].append(float(key_matches(path, template)))
    return {k: statistics.mean(v) if v else float("nan") for k, v in rows.items()}


def corpus_reference_row(references: dict, tunes: dict) -> dict[str, float]:
    """Each held-out tune against the others (leave one out), for PD/DD/MD and in-scale of nothing."""
    rows = {k: [] for k in ("pd", "pc", "dd", "md")}
    for family, family_tunes in tunes.items():
        for i, tune in enumerate(family_tunes[: 2 * MD_TUNES]):
            others = [t for j, t in enumerate(family_tunes) if j != i]
            tonic = tune[-1][2]
            degrees_pool = [(e[2] - t[-1][2]) % 12 for t in others for e in t]
            registers_pool = [r for t in others for r in registers(t)]
            durations_pool = quantized_durations(e[1] for t in others for e in t)
            degrees = [(e[2] - tonic) % 12 for e in tune]
            rows["pc"].append(overlap(histogram(degrees, range(12)), histogram(degrees_pool, range(12))))
            rows["pd"].append(overlap(histogram(registers(tune), REGISTER_BINS),
                                      histogram(registers_pool, REGISTER_BINS)))
            durations = quantized_durations(e[1] for e in tune)
            rows["dd"].append(overlap(histogram(durations, DURATION_BINS), histogram(durations_pool, DURATION_BINS)))
            grids = [g for j, g in enumerate(references[family]["grids"][:MD_TUNES + 1]) if j != i][:MD_TUNES]
            rows["md"].append(statistics.mean(dtw(pitch_grid(tune, tonic), g) for g in grids))
    return {k: statistics.mean(v) for k, v in rows.items()}


def build_references() -> tuple[dict, dict]:
    references, tunes = {}, {}
    for family, name in HELD_OUT.items():
        family_tunes = corpus_tunes(name, N_HELD_OUT)
        tunes[family] = family_tunes
        degrees = [(e[2] - t[-1][2]) % 12 for t in family_tunes for e in t]
        durations = quantized_durations(e[1] for t in family_tunes for e in t)
        references[family] = {
            "pc": histogram(degrees, range(12)),
            "pd": histogram([r for t in family_tunes for r in registers(t)], REGISTER_BINS),
            "dd": histogram(durations, DURATION_BINS),
            "grids": [pitch_grid(t, t[-1][2]) for t in family_tunes],
        }
    return references, tunes


THEMES = ("", "离别", "春", "边塞", "秋风", "grief", "spring joy", "frontier")


def mood_table() -> str:
    """What each theme does to one Chinese and one English setting (seed 0): the mood read and the choices."""
    rows = [f"{'theme':<12} {'poem':<10} {'mood':<8} {'from':<6} {'mode':<6} {'tempo':>5} {'register':>8}"]
    for theme in THEMES:
        for title, text in (("静夜思", TANG["静夜思"]), ("The Lamb", ENGLISH["The Lamb"])):
            template = compose(analyze(text), text, seed=0, theme=theme).template
            reading = template.mood_reading
            rows.append(f"{_pad(theme or '(none)', 12)} {_pad(title, 10)} {reading.mood:<8} {reading.source:<6} "
                        f"{template.mode:<6} {template.tempo_bpm:5.0f} {template.register:+8d}")
    return "\n".join(rows)


def _pad(text: str, width: int) -> str:
    import unicodedata

    return text + " " * max(0, width - sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    started = time.perf_counter()
    references, tunes = build_references()
    print(f"held-out reference tunes: {', '.join(f'{HELD_OUT[f]} {len(t)}' for f, t in tunes.items())}; "
          f"{len(TANG)} Tang quatrains + {len(ENGLISH)} English stanzas x {len(SEEDS)} seeds", file=sys.stderr)
    header = (f"{'system':<17} {'poems':<8} {'coverage':>8} {'stress@strong':>13} {'tone':>6} {'in-scale':>8} "
              f"{'cadence':>7} {'PD':>6} {'PD-pc':>6} {'DD':>6} {'MD':>6} {'key':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        systems = ["random", "template+random", "ours"]
        if (MODEL_DIR / "model.safetensors").exists():
            systems.append("ours (gpt)")
        for system in systems:
            for label, poems in (("Tang", TANG), ("English", ENGLISH)):
                r = evaluate(system, poems, references, Path(folder))
                tone = f"{r['tone']:6.1%}" if label == "Tang" else f"{'-':>6}"
                print(f"{system:<17} {label:<8} {r['coverage']:8.1%} {r['stress']:13.1%} {tone} {r['scale']:8.1%} "
                      f"{r['cadence']:7.1%} {r['pd']:6.3f} {r['pc']:6.3f} {r['dd']:6.3f} {r['md']:6.2f} "
                      f"{r['key']:6.1%}")
        for mode in ("gong", "shang", "zhi", "yu"):
            system = f"ours, {mode}"
            r = evaluate(system, TANG, references, Path(folder))
            print(f"{system:<17} {'Tang':<8} {r['coverage']:8.1%} {r['stress']:13.1%} {r['tone']:6.1%} "
                  f"{r['scale']:8.1%} {r['cadence']:7.1%} {r['pd']:6.3f} {r['pc']:6.3f} {r['dd']:6.3f} "
                  f"{r['md']:6.2f} {r['key']:6.1%}")
    c = corpus_reference_row(references, tunes)
    print(f"{'corpus (held-out)':<17} {'both':<8} {'-':>8} {'-':>13} {'-':>6} {'-':>8} {'-':>7} "
          f"{c['pd']:6.3f} {c['pc']:6.3f} {c['dd']:6.3f} {c['md']:6.2f} {'-':>6}")
    print()
    print(mood_table())
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
