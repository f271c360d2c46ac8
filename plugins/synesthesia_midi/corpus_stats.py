"""Build the melody statistics the pitch chooser uses, from public-domain tunes inside the music21 wheel.

Run once (a few minutes on one core); the result is a small JSON shipped in the package::

    python -m synesthesia_midi.corpus_stats            # writes data/melody_stats.json

Two families are counted separately: ``zh`` (the Essen collection's Han Chinese songs) and ``west``
(Essen German songs, O'Neill's Irish tunes, the soprano line of Bach chorales). Every tenth tune of each
source is held out (``is_held_out``) so the benchmark can compare our melodies with tunes the statistics
never saw. The tonic of a tune is taken to be its final note, which holds for nearly all folk songs and
chorales; scale degrees are semitones above that tonic.

Chinese tunes are also sorted by pentatonic mode (``pentatonic_mode``: gong, shang, zhi, yu, jue, named by
the degree the tune ends on), with their own register counts (semitones from the final): a zhi tune uses
the pitches around its final differently from a gong tune.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

from synesthesia.fileio import write_json_atomic

STATS_PATH = Path(__file__).parent / "data" / "melody_stats.json"
MAX_INTERVAL = 12  # larger leaps are folded into +-12; they are rare in sung melodies
# Pentatonic modes as semitones above the final; a tune belongs to the one that holds most of its notes.
PENTATONIC_MODES: dict[str, frozenset[int]] = {
    "gong": frozenset((0, 2, 4, 7, 9)),
    "shang": frozenset((0, 2, 5, 7, 10)),
    "jue": frozenset((0, 3, 5, 8, 10)),
    "zhi": frozenset((0, 2, 5, 7, 9)),
    "yu": frozenset((0, 3, 5, 7, 10)),
}
LOWEST, HIGHEST = -12, 19  # registers (semitones from the final) beyond these are folded in
MODE_COVERAGE = 0.9  # share of a tune's notes its mode must hold; below that the tune counts as "other"

# (family, music21 corpus name). Opus files hold many tunes each.
SOURCES: list[tuple[str, str]] = [
    ("zh", "essenFolksong/han1"),
    ("zh", "essenFolksong/han2"),
    ("west", "essenFolksong/erk10"),
    ("west", "essenFolksong/altdeu10"),
    ("west", "essenFolksong/ballad10"),
    ("west", "essenFolksong/kinder0"),
    ("west", "oneills1850/0001-0050"),
    ("west", "oneills1850/0051-0100"),
    ("west", "oneills1850/0101-0200"),
]
N_CHORALES = 80  # Bach soprano lines


def pentatonic_mode(degrees: Counter) -> str:
    """The pentatonic mode whose five degrees hold at least MODE_COVERAGE of the notes, else ``other``."""
    total = sum(degrees.values())
    best = max(PENTATONIC_MODES, key=lambda m: sum(degrees[d] for d in PENTATONIC_MODES[m]))
    held = sum(degrees[d] for d in PENTATONIC_MODES[best])
    return best if total and held / total >= MODE_COVERAGE else "other"


def is_held_out(index: int) -> bool:
    """Every tenth tune of a source (index 0, 10, 20, ...) is kept out of the statistics."""
    return index % 10 == 0


def melody_events(score) -> list[tuple[int, float, float]]:
    """(midi pitch, beat strength, duration in quarter notes) of the top line, ties merged, rests dropped."""
    part = score.parts[0] if hasattr(score, "parts") and len(score.parts) else score
    events = []
    for element in part.stripTies().flatten().notes:
        duration = float(element.quarterLength)
        if duration <= 0:  # grace notes
            continue
        pitch = max(element.pitches).midi if element.isChord else element.pitch.midi
        events.append((int(pitch), float(element.beatStrength), duration))
    return events


def iter_tunes(corpus_name: str):
    """Yield the scores of one corpus entry (an opus of many tunes, or a single score)."""
    from music21 import corpus, stream

    parsed = corpus.parse(corpus_name)
    if isinstance(parsed, stream.Opus):
        yield from parsed.scores
    else:
        yield parsed


def iter_chorale_sopranos(limit: int):
    from music21 import corpus

    for i, chorale in enumerate(corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="stream")):
        if i >= limit:
            break
        soprano = chorale.parts[0]
        yield soprano


class Counts:
    def __init__(self, by_mode: bool = False) -> None:
        self.by_mode = by_mode
        self.mode_tunes: Counter = Counter()
        self.mode_register_by_strength: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.register_by_strength: dict[str, Counter] = defaultdict(Counter)
        self.interval_bigram: dict[int | str, Counter] = defaultdict(Counter)
        self.degree_by_strength: dict[str, Counter] = defaultdict(Counter)
        self.final_degree_of_phrase: Counter = Counter()
        self.durations: Counter = Counter()
        self.tunes = 0
        self.notes = 0

    def add(self, events: list[tuple[int, float, float]]) -> None:
        if len(events) < 4:
            return
        final = events[-1][0]
        tonic = final % 12
        mode = pentatonic_mode(Counter((pitch - tonic) % 12 for pitch, _, _ in events)) if self.by_mode else None
        if mode:
            self.mode_tunes[mode] += 1
        previous_interval: int | str = "start"
        for (pitch, strength, duration), following in zip(events, events[1:] + [None]):
            degree = (pitch - tonic) % 12
            beat = "strong" if strength >= 0.5 else "weak"
            register = max(LOWEST, min(HIGHEST, pitch - final))
            self.degree_by_strength[beat][degree] += 1
            self.register_by_strength[beat][register] += 1
            if mode:
                self.mode_register_by_strength[mode][beat][register] += 1
            self.durations[round(duration, 3)] += 1
            if following is not None:
                interval = max(-MAX_INTERVAL, min(MAX_INTERVAL, following[0] - pitch))
                self.interval_bigram[previous_interval][interval] += 1
                previous_interval = interval
        self.tunes += 1
        self.notes += len(events)

    def as_json(self) -> dict:
        def table(by_beat: dict[str, Counter]) -> dict:
            return {k: {str(d): c for d, c in sorted(v.items())} for k, v in sorted(by_beat.items())}

        modes = {
            mode: {"tunes": self.mode_tunes[mode], "register_by_strength": table(by_beat)}
            for mode, by_beat in sorted(self.mode_register_by_strength.items())
        }
        return {
            "tunes": self.tunes,
            **({"modes": modes} if self.by_mode else {}),
            "notes": self.notes,
            "interval_bigram": {str(k): {str(i): c for i, c in sorted(v.items())}
                                for k, v in self.interval_bigram.items()},
            "degree_by_strength": table(self.degree_by_strength),
            "register_by_strength": table(self.register_by_strength),
            "durations": {str(d): c for d, c in sorted(self.durations.items())},
        }


def build(out_path: Path = STATS_PATH, verbose: bool = True) -> dict:
    counts = {"zh": Counts(by_mode=True), "west": Counts()}
    held_out = Counter()
    for family, name in SOURCES:
        for index, score in enumerate(iter_tunes(name)):
            if is_held_out(index):
                held_out[family] += 1
                continue
            counts[family].add(melody_events(score))
        if verbose:
            print(f"{name}: {counts[family].tunes} {family} tunes so far", file=sys.stderr)
    for index, soprano in enumerate(iter_chorale_sopranos(N_CHORALES)):
        if is_held_out(index):
            held_out["west"] += 1
            continue
        counts["west"].add(melody_events(soprano))
    result = {
        "about": "Interval bigrams, scale degree and register (semitones from the final) by beat strength, "
        "register also per pentatonic mode for zh, and duration counts from music21's corpus; built by "
        "synesthesia_midi/corpus_stats.py. Every tenth tune per source held out.",
        "sources": [name for _, name in SOURCES] + [f"bach chorales (Riemenschneider 1-{N_CHORALES}, soprano)"],
        "max_interval": MAX_INTERVAL,
        "held_out_tunes": dict(held_out),
        "families": {family: c.as_json() for family, c in counts.items()},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_path, result, indent=None, separators=(",", ":"))
    return result


if __name__ == "__main__":
    summary = build()
    for family, data in summary["families"].items():
        print(f"{family}: {data['tunes']} tunes, {data['notes']} notes")
    print(f"wrote {STATS_PATH}")
