"""Build the melody statistics the pitch chooser uses, from public-domain tunes inside the music21 wheel.

Run once (a few minutes on one core); the result is a small JSON shipped in the package::

    python -m synesthesia_midi.corpus_stats            # writes data/melody_stats.json

Two families are counted separately: ``zh`` (the Essen collection's Han Chinese songs) and ``west``
(Essen German songs, O'Neill's Irish tunes, the soprano line of Bach chorales). Every tenth tune of each
source is held out (``is_held_out``) so the benchmark can compare our melodies with tunes the statistics
never saw. The tonic of a tune is taken to be its final note, which holds for nearly all folk songs and
chorales; scale degrees are semitones above that tonic.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

from synesthesia.fileio import write_json_atomic

STATS_PATH = Path(__file__).parent / "data" / "melody_stats.json"
MAX_INTERVAL = 12  # larger leaps are folded into +-12; they are rare in sung melodies

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
    def __init__(self) -> None:
        self.interval_bigram: dict[int | str, Counter] = defaultdict(Counter)
        self.degree_by_strength: dict[str, Counter] = defaultdict(Counter)
        self.final_degree_of_phrase: Counter = Counter()
        self.durations: Counter = Counter()
        self.tunes = 0
        self.notes = 0

    def add(self, events: list[tuple[int, float, float]]) -> None:
        if len(events) < 4:
            return
        tonic = events[-1][0] % 12
        previous_interval: int | str = "start"
        for (pitch, strength, duration), following in zip(events, events[1:] + [None]):
            degree = (pitch - tonic) % 12
            self.degree_by_strength["strong" if strength >= 0.5 else "weak"][degree] += 1
            self.durations[round(duration, 3)] += 1
            if following is not None:
                interval = max(-MAX_INTERVAL, min(MAX_INTERVAL, following[0] - pitch))
                self.interval_bigram[previous_interval][interval] += 1
                previous_interval = interval
        self.tunes += 1
        self.notes += len(events)

    def as_json(self) -> dict:
        return {
            "tunes": self.tunes,
            "notes": self.notes,
            "interval_bigram": {str(k): {str(i): c for i, c in sorted(v.items())} for k, v in self.interval_bigram.items()},
            "degree_by_strength": {k: {str(d): c for d, c in sorted(v.items())} for k, v in self.degree_by_strength.items()},
            "durations": {str(d): c for d, c in sorted(self.durations.items())},
        }


def build(out_path: Path = STATS_PATH, verbose: bool = True) -> dict:
    counts = {"zh": Counts(), "west": Counts()}
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
        "about": "Interval bigrams, scale-degree-by-beat-strength and duration counts from music21's corpus; "
        "built by synesthesia_midi/corpus_stats.py. Every tenth tune per source held out.",
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
