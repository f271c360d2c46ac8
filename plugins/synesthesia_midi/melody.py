"""Set words to a melody: a rhythm template from the prosody, then pitches chosen under constraints.

The template (in the spirit of TeleMelody's lyric-to-template step) is rule-based: mode, tempo and
register from the theme's mood (``mood.py``, a curated lexicon in ``data/moods.json``), metre, one note
per syllable, stressed syllables on strong beats, a long note at a caesura, a long note and a rest at a
line end, a harmony plan per bar (triads for major and minor; for pentatonic modes anchor sets from the
mode's own scale, and the key's triad on long notes), and a cadence on the tonic or the fifth at each line
end (tonic at stanza ends).

Pitches are then chosen by a beam search whose scores come from statistics *learned* from public-domain
tunes in music21's corpus (``data/melody_stats.json``, built by ``corpus_stats.py``): how likely each
interval is after the previous one, and how likely each pitch is, as semitones above or below the tune's
final note (scale degree and register at once), on a strong or weak beat (for Chinese, counted
separately in each pentatonic mode). The melody ends on its final, as the counted tunes do.
The *rules* act as constraints: pitches stay in the scale and a singable range, strong beats take chord
tones (pentatonic: the bar's anchors), long notes inside a line their pillars, line ends their cadence
note, and for Chinese the melodic direction between two syllables follows their Mandarin tones
(ReLyMe-style: a syllable whose tone sits higher than the previous one's goes up, lower goes down).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from synesthesia.errors import ConfigError

from .mood import MoodReading, read_mood
from .prosody import Prosody, Syllable

UNITS_PER_QUARTER = 2  # the rhythm grid is the eighth note
TONIC_LOW = 56  # Ab3: the lowest tonic of a neutral mood; the highest is G4, eleven semitones up
STATS_PATH = Path(__file__).parent / "data" / "melody_stats.json"

NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]

# Semitones above the final (tonic). Chinese modes are named after the pentatonic degree the tune ends on.
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "gong": (0, 2, 4, 7, 9),
    "shang": (0, 2, 5, 7, 10),
    "zhi": (0, 2, 5, 7, 9),
    "yu": (0, 3, 5, 7, 10),
}
# The key a tune in each mode is heard in, as (semitones from the final to the key's tonic, major/minor):
# what music21's Krumhansl analysis reports for most held-out Han songs of that mode (a zhi tune on G is
# heard in C major, its gong; yu on A in A minor; gong on C in C major; shang mostly minor on its final).
# It names the key signature, and it is the key the benchmark expects the analysis to find.
MODE_KEY: dict[str, tuple[int, str]] = {
    "major": (0, "major"), "minor": (0, "minor"),
    "gong": (0, "major"), "zhi": (5, "major"), "shang": (0, "minor"), "yu": (0, "minor"),
}
DOMINANT = 7
# How much the learned register-by-beat statistics count against the interval model: 1.5 brings the
# melodies' pitch distribution nearest the held-out tunes' while the tone rule still holds for ~90% of
# syllable pairs (bench_midi.py; 1.0 → PD 0.43, 3.0 → PD 0.46 but tones 86%).
REGISTER_WEIGHT = 1.5
ANCHOR_BONUS = 0.4  # per key-triad note on a strong beat

# Chord roots (semitones above the tonic) used between the first bar and the cadence of each line. A
# pentatonic scale has no leading tone, so the tonic chord returns often to keep the key audible.
INNER_CHORDS = {
    "major": (5, 9, 2, 0),
    "minor": (5, 8, 3, 0),
    "gong": (0, 2, 0, 7),
    "zhi": (0, 5, 0, 2),
    "shang": (0, 5, 0, 10),
    "yu": (0, 5, 0, 7),
}

# Pentatonic harmony (Chinese modes): one anchor set per bar instead of a triad (``pentatonic_areas``).
# An inner bar is a home bar twice as often as an away bar.
AWAY = -1
PENTATONIC_INNER = (0, 0, AWAY)
# A note this long inside a line (a caesura) is a pillar: it takes ``Template.pillars``, the tones that
# name the key. The key finder, like a listener, weighs notes by how long they sound.
PILLAR_MIN_UNITS = 4

# Mandarin tones by where they sit in the voice (Chao tone letters 55, 35, 214, 51 -> a rough height);
# the neutral tone (5) sets no direction.
TONE_HEIGHT = {1: 5.0, 2: 4.0, 3: 1.5, 4: 3.0}

def parse_tonic(name: str, field_name: str = "key") -> int:
    """Pitch class of a note name like ``C``, ``F#``, ``Bb``; a ConfigError naming the field otherwise."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b♯♭]?)\s*", name or "")
    if not match:
        raise ConfigError(f"{field_name}: {name!r} is not a note name; use one like C, F#, Bb")
    pc = NOTE_NAMES[match.group(1).upper()]
    accidental = match.group(2)
    return (pc + (1 if accidental in "#♯" and accidental else -1 if accidental else 0)) % 12


@dataclass
class Template:
    language: str
    mode: str
    tonic_midi: int  # the tonic's MIDI pitch in the middle of the melody's range
    beats_per_bar: int
    tempo_bpm: float
    mood: int  # >0 bright, <0 dark
    register: int = 0  # semitones the mood moved the range by
    mood_reading: MoodReading | None = None  # what was read from the theme (and poem), if anything

    @property
    def tonic_pc(self) -> int:
        return self.tonic_midi % 12

    @property
    def scale(self) -> tuple[int, ...]:
        return MODES[self.mode]

    @property
    def bar_units(self) -> int:
        return self.beats_per_bar * UNITS_PER_QUARTER

    @property
    def strong_step(self) -> int:
        """Units between strong beats: beats 1 and 3 in 4/4, the downbeat in 3/4."""
        return self.bar_units // 2 if self.beats_per_bar % 2 == 0 else self.bar_units

    @property
    def key(self) -> tuple[int, str]:
        """(pitch class, "major" or "minor") of the key the melody is heard in (see MODE_KEY)."""
        offset, quality = MODE_KEY[self.mode]
        return (self.tonic_pc + offset) % 12, quality

    @property
    def key_name(self) -> str:
        """The key music21 should find and the key signature states: 'C', 'Am', ..."""
        pitch_class, quality = self.key
        return SHARP_NAMES[pitch_class] + ("m" if quality == "minor" else "")

    @property
    def pillars(self) -> tuple[int, ...]:
        """Degrees a long note inside a line (a caesura) takes in a pentatonic mode: the key's tonic triad,
        less the final when the final is the key's tonic (strong beats and cadences already weigh on it;
        the third and fifth are what name the key). In zhi the final is the key's fifth and stays."""
        triad = self.key_triad
        if self.key[0] == self.tonic_pc and len(triad) > 1:
            return tuple(d for d in triad if d != 0)
        return triad

    @property
    def key_triad(self) -> tuple[int, ...]:
        """Degrees above the final of that key's tonic triad that the scale holds: the notes that make the
        key audible when they sit on strong beats."""
        pitch_class, quality = self.key
        root = (pitch_class - self.tonic_pc) % 12
        third = 4 if quality == "major" else 3
        return tuple(d % 12 for d in (root, root + third, root + 7) if d % 12 in self.scale)


@dataclass
class Note:
    onset: int  # grid units (eighth notes) from the start
    duration: int
    pitch: int = 0
    syllable: Syllable | None = None  # None for the continuation of a melisma
    strong: bool = False
    cadence: str = ""  # "tonic" or "dominant" for notes that end a line

    @property
    def lyric(self) -> str | None:
        return self.syllable.lyric if self.syllable is not None else None


@dataclass
class Melody:
    template: Template
    notes: list[Note]
    chords: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # per bar: (root, pitch classes)
    total_units: int = 0

    @property
    def syllable_notes(self) -> list[Note]:
        return [n for n in self.notes if n.syllable is not None]


# --------------------------------------------------------------------------------------------------
# Template


def choose_template(
    prosody: Prosody,
    text: str,
    *,
    form: str = "",
    theme: str = "",
    rng: random.Random,
    key: str | None = None,
    mode: str = "auto",
    tempo: float | None = None,
) -> Template:
    """Mode, tonic, metre and tempo. The theme's mood (``mood.read_mood``: the theme's words first, the
    poem's when the theme names no mood) picks the mode, scales the tempo and moves the register;
    an explicit ``key``, ``mode`` or ``tempo`` wins over it."""
    language = prosody.language
    reading = read_mood(theme, text)
    classical = language == "zh"
    if mode == "auto":
        mode = reading.zh_mode if classical else reading.en_mode
    if mode not in MODES:
        raise ConfigError(f"mode: {mode!r} is not one of auto, {', '.join(MODES)}")
    # The tonic between Ab3 and G4, moved up or down by the mood's register: a seeded key is transposed
    # by it; a key the user named stays, in the octave nearest the moved range.
    if key:
        low = TONIC_LOW + reading.register
        tonic_midi = low + (parse_tonic(key) - low) % 12
    else:
        tonic_pc = rng.choice([0, 2, 5, 7, 9] if classical else [0, 2, 4, 5, 7, 9])
        tonic_midi = TONIC_LOW + (tonic_pc - TONIC_LOW) % 12 + reading.register
    stresses = [s.stressed for s in prosody.syllables]
    triple = not classical and (_is_triple(stresses) or form.lower() == "limerick")
    beats = 3 if triple else 4
    if tempo is None:
        base = 72 if classical else (132 if triple else 96)
        tempo = round(base * reading.tempo_factor)
    return Template(language, mode, tonic_midi, beats, float(tempo), reading.valence, reading.register, reading)


def _is_triple(stresses: list[bool]) -> bool:
    """Anapaestic or dactylic verse: on average about two unstressed syllables between stresses."""
    positions = [i for i, s in enumerate(stresses) if s]
    if len(positions) < 3:
        return False
    gaps = [b - a - 1 for a, b in zip(positions, positions[1:])]
    return sum(gaps) / len(gaps) >= 1.6


# --------------------------------------------------------------------------------------------------
# Rhythm


def _feet(segment: list[Syllable]) -> tuple[list[Syllable], list[list[Syllable]]]:
    """Split a segment into its pick-up (unstressed syllables before the first stress) and feet, each a
    stressed syllable and the unstressed ones after it."""
    first = next((i for i, s in enumerate(segment) if s.stressed), None)
    if first is None:  # nothing stressed: let the first syllable carry the beat
        first = 0
    pickup, feet = segment[:first], []
    for syllable in segment[first:]:
        if syllable.stressed or not feet:
            feet.append([syllable])
        else:
            feet[-1].append(syllable)
    return pickup, feet


def _split_segments(line: list[Syllable]) -> list[list[Syllable]]:
    segments, current = [], []
    for syllable in line:
        current.append(syllable)
        if syllable.caesura_after and syllable is not line[-1]:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return segments


def _share(span: int, foot: list[Syllable], triple: bool) -> list[int]:
    k = len(foot)
    if k == 1:
        return [span]
    if k == 2 and triple:
        return [span - span // 3, span // 3]
    if k == 2 and span == 4 and foot[0].level == "ping" and foot[1].level in ("ze", "ru"):
        return [3, 1]  # 平长仄短
    base = [span // k] * k
    base[0] += span - sum(base)
    return base


def place_rhythm(prosody: Prosody, template: Template) -> tuple[list[Note], list[int], int]:
    """Onsets and durations for every syllable: the notes, the bar each line ends in, the total length."""
    step, bar = template.strong_step, template.bar_units
    triple = template.beats_per_bar == 3
    notes: list[Note] = []
    line_end_bars: list[int] = []
    segments_per_line = [[_feet(seg) for seg in _split_segments(line)] for line in prosody.lines]
    first_pickup = len(segments_per_line[0][0][0]) if segments_per_line else 0
    downbeat = bar * math.ceil(first_pickup / bar) if first_pickup else 0
    for line_index, segments in enumerate(segments_per_line):
        t = downbeat
        for seg_index, (pickup, feet) in enumerate(segments):
            start = t - len(pickup)
            for k, syllable in enumerate(pickup):
                notes.append(Note(start + k, 1, syllable=syllable))
            for foot in feet:
                span = step
                while span < len(foot):
                    span += step
                for syllable, length in zip(foot, _share(span, foot, triple)):
                    notes.append(Note(t, length, syllable=syllable))
                    t += length
            last = notes[-1]
            if seg_index < len(segments) - 1:  # caesura: hold the note, leaving room for the next pick-up
                next_pickup = len(segments[seg_index + 1][0])
                extra = step
                while extra - next_pickup < 1:
                    extra += step
                last.duration += extra - next_pickup
                t += extra
        # Line end: a long note (at least a half note) up to the bar line, then a quarter rest.
        last = notes[-1]
        next_pickup = len(segments_per_line[line_index + 1][0][0]) if line_index + 1 < len(segments_per_line) else 0
        end = bar * math.ceil(t / bar)
        while end - next_pickup - 2 - last.onset < 4:
            end += bar
        if last.syllable is not None and last.syllable.stanza_end and line_index + 1 < len(segments_per_line):
            end += bar
        last.duration = end - next_pickup - 2 - last.onset
        line_end_bars.append((last.onset) // bar)
        downbeat = end
    total = downbeat
    for note in notes:
        note.strong = note.onset % step == 0
    return notes, line_end_bars if notes else [], total


# --------------------------------------------------------------------------------------------------
# Harmony


def chord_tones(root: int, scale: tuple[int, ...]) -> tuple[int, ...]:
    """Pitch classes (above the tonic) of the triad on ``root`` that the scale holds."""
    third = next((root + t for t in (4, 3) if (root + t) % 12 in scale), None)
    tones = [root % 12]
    if third is not None:
        tones.append(third % 12)
    if (root + 7) % 12 in scale:
        tones.append((root + 7) % 12)
    return tuple(tones)


def plan_harmony(notes: list[Note], line_end_bars: list[int], prosody: Prosody, template: Template, rng: random.Random):
    """One chord per bar. Lines open on the tonic; inner bars wander; the cadence bar of a line is the
    tonic at stanza ends; otherwise the dominant (a half cadence) on odd lines of a stanza and the tonic
    on even ones, or for classical Chinese the tonic after a rhyming level-tone line end and the dominant
    after an oblique one. The bar before a tonic cadence is the dominant (major/minor) or the contrasting
    pentatonic area (see ``pentatonic_areas``).

    Major and minor take triads; pentatonic modes take anchor sets from their own scale instead."""
    bar = template.bar_units
    pentatonic = len(template.scale) == 5
    n_bars = max(1, (max(n.onset + n.duration for n in notes) + bar - 1) // bar) if notes else 1
    roots: list[int | None] = [None] * n_bars
    line_first_bars = []
    for line in prosody.lines:
        first_note = next(n for n in notes if n.syllable is line[0])
        line_first_bars.append(max(0, first_note.onset) // bar)
    stanza_line = 0
    for i, end_bar in enumerate(line_end_bars):
        last_syllable = prosody.lines[i][-1]
        if last_syllable.stanza_end:
            cadence = "tonic"
        elif last_syllable.level is not None:
            # Classical Chinese: a line ending on a level (平) syllable rhymes and closes on the tonic;
            # one ending on an oblique (仄) syllable, like the third line of a quatrain, stays open.
            cadence = "tonic" if last_syllable.level == "ping" else "dominant"
        else:
            cadence = "tonic" if stanza_line % 2 == 1 else "dominant"
        roots[end_bar] = 0 if cadence == "tonic" else DOMINANT
        if cadence == "tonic" and end_bar - 1 >= 0 and end_bar - 1 > line_first_bars[i]:
            roots[end_bar - 1] = AWAY if pentatonic else DOMINANT
        if roots[line_first_bars[i]] is None:
            roots[line_first_bars[i]] = 0
        line_note = next(n for n in notes if n.syllable is last_syllable)
        line_note.cadence = cadence
        stanza_line += 1
        if last_syllable.stanza_end:
            stanza_line = 0
    if pentatonic:
        home, away = pentatonic_areas(template.mode)
        plan = []
        for r in roots:
            if r is None:
                r = rng.choice(PENTATONIC_INNER)
            # A cadence bar's own note is fixed by the cadence; its anchors are home (tonic) or away.
            plan.append((0, home) if r == 0 else (away[1], away))
        return plan
    choices = INNER_CHORDS[template.mode]
    for b in range(n_bars):
        if roots[b] is None:
            roots[b] = rng.choice(choices)
    return [(r, chord_tones(r, template.scale)) for r in roots]


def pentatonic_areas(mode: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The two anchor sets of a pentatonic mode's harmony plan, as degrees above the final.

    *Home*: the final and its pentatonic neighbours, the scale tones a step below and above it (gong on C:
    A C D; yu on A: G A C). *Away*: the mode's framework tone (骨干音) a fourth above the final, or the fifth
    where the scale lacks the fourth (gong), with its own neighbours (zhi on G: A C D; gong on C: E G A).
    Strong beats stay near the final, not on the fifth above it as a tonic-dominant plan has them.
    """
    scale = MODES[mode]

    def around(degree: int) -> tuple[int, ...]:
        i = scale.index(degree)
        return tuple(sorted({scale[i - 1], degree, scale[(i + 1) % len(scale)]}))

    return around(0), around(5 if 5 in scale else 7)


# --------------------------------------------------------------------------------------------------
# Pitches


@lru_cache(maxsize=1)
def load_stats() -> dict:
    if not STATS_PATH.exists():
        raise ConfigError(
            f"{STATS_PATH} is missing; build it with: python -m synesthesia_midi.corpus_stats"
        )
    return json.loads(STATS_PATH.read_text(encoding="utf-8"))


REGISTER_LOW, REGISTER_HIGH = -12, 19  # as corpus_stats counts them
MIN_MODE_TUNES = 50  # fewer tunes than this in a mode: use the whole family's register counts


class IntervalModel:
    """Smoothed log-probabilities from the corpus statistics of one family (``zh`` or ``west``); the
    register table of ``mode`` when the corpus has enough tunes in it."""

    def __init__(self, family: str, mode: str | None = None) -> None:
        stats = load_stats()
        data = stats["families"][family]
        by_mode = data.get("modes", {}).get(mode or "")
        source = by_mode if by_mode and by_mode["tunes"] >= MIN_MODE_TUNES else data
        self.max_interval = stats["max_interval"]
        self.bigram = {}
        for previous, counts in data["interval_bigram"].items():
            total = sum(counts.values()) + 0.5 * (2 * self.max_interval + 1)
            self.bigram[previous] = {int(i): math.log((counts.get(str(i), 0) + 0.5) / total)
                                     for i in range(-self.max_interval, self.max_interval + 1)}
        self.register = {}
        for strength, counts in source["register_by_strength"].items():
            total = sum(counts.values()) + 0.5 * (REGISTER_HIGH - REGISTER_LOW + 1)
            self.register[strength] = {r: math.log((counts.get(str(r), 0) + 0.5) / total)
                                       for r in range(REGISTER_LOW, REGISTER_HIGH + 1)}

    def interval_logp(self, previous: int | None, interval: int) -> float:
        key = "start" if previous is None else str(max(-self.max_interval, min(self.max_interval, previous)))
        table = self.bigram.get(key) or self.bigram["start"]
        return table[max(-self.max_interval, min(self.max_interval, interval))]

    def register_logp(self, offset: int, strong: bool) -> float:
        """Log-probability of a pitch ``offset`` semitones from the final: scale degree and height together."""
        return self.register["strong" if strong else "weak"][max(REGISTER_LOW, min(REGISTER_HIGH, offset))]


def expected_direction(previous: Syllable | None, current: Syllable | None) -> int:
    """+1, -1 or 0: where Mandarin tones ask the melody to move from one syllable to the next."""
    if previous is None or current is None:
        return 0
    a, b = TONE_HEIGHT.get(previous.tone or 0), TONE_HEIGHT.get(current.tone or 0)
    if a is None or b is None or a == b:
        return 0
    return 1 if b > a else -1


def choose_pitches(melody: Melody, rng: random.Random, *, beam_width: int = 12, temperature: float = 0.6,
                   pitch_model: str = "stats") -> None:
    """Fill in ``note.pitch`` for every note by beam search under the constraints described above.

    ``pitch_model="stats"`` scores candidates with the corpus interval and degree statistics;
    ``"gpt"`` with the small melody GPT (``melody_model``) trained by our core on the same tunes."""
    template = melody.template
    family = "zh" if template.language == "zh" else "west"
    if pitch_model not in ("stats", "gpt"):
        raise ConfigError(f"pitch_model: {pitch_model!r} is not one of stats, gpt")
    model = IntervalModel(family, template.mode)
    scorer = None
    if pitch_model == "gpt":
        from .melody_model import GPTPitchScorer, pitch_token

        scorer = GPTPitchScorer(family)
    tonic, scale = template.tonic_midi, template.scale
    low, high = tonic - 5, tonic + 14
    candidates = [p for p in range(low, high + 1) if (p - tonic) % 12 in scale]
    # A pentatonic scale fits several keys (C D E G A lies in C, F and G major and in A minor); leaning
    # on the key's tonic triad on strong beats is what makes the intended one audible.
    pentatonic = len(scale) == 5
    anchor_bonus = {d: ANCHOR_BONUS for d in template.key_triad} if pentatonic else {}
    bar = template.bar_units
    notes = melody.notes
    last_index = len(notes) - 1
    # Each beam entry: (score, pitches, last interval)
    beams: list[tuple[float, list[int], int | None]] = [(0.0, [], None)]
    for i, note in enumerate(notes):
        chord = melody.chords[min(len(melody.chords) - 1, max(0, note.onset) // bar)][1]
        allowed = candidates
        if i == last_index:
            allowed = [tonic]  # the tune ends on its final, which the register statistics count from
        elif note.cadence:
            target = 0 if note.cadence == "tonic" else DOMINANT
            allowed = [p for p in candidates if (p - tonic) % 12 == target]
        elif pentatonic and note.duration >= PILLAR_MIN_UNITS:
            allowed = [p for p in candidates if (p - tonic) % 12 in template.pillars] or candidates
        elif note.strong:
            in_chord = [p for p in candidates if (p - tonic) % 12 in chord]
            allowed = in_chord or candidates
        previous_syllable = notes[i - 1].syllable if i > 0 else None
        direction = expected_direction(previous_syllable, note.syllable) if template.language == "zh" else 0
        expanded = []
        learned = None
        if scorer is not None:
            histories = [[(q - tonic, notes[k].strong) for k, q in enumerate(pitches)] for _s, pitches, _l in beams]
            learned = scorer.logprobs(histories, note.strong).tolist()
        for b, (score, pitches, last_interval) in enumerate(beams):
            for p in allowed:
                if learned is not None:
                    s = score + learned[b][pitch_token(p - tonic)]
                else:
                    s = score + REGISTER_WEIGHT * model.register_logp(p - tonic, note.strong)
                if note.strong:
                    s += anchor_bonus.get((p - tonic) % 12, 0.0)
                interval = None
                if pitches:
                    interval = p - pitches[-1]
                    if learned is None:
                        s += model.interval_logp(last_interval, interval)
                    if direction and (interval == 0 or (interval > 0) != (direction > 0)):
                        s -= 4.0
                    if len(pitches) >= 2 and pitches[-1] == pitches[-2] == p:
                        s -= 1.5
                noisy = s + temperature * _gumbel(rng)
                expanded.append((noisy, s, pitches + [p], interval))
        expanded.sort(key=lambda e: e[0], reverse=True)
        beams = [(s, pitches, interval) for _noisy, s, pitches, interval in expanded[:beam_width]]
    best = max(beams, key=lambda b: b[0])[1]
    for note, pitch in zip(notes, best):
        note.pitch = pitch


def _gumbel(rng: random.Random) -> float:
    return -math.log(-math.log(rng.random() * 0.999998 + 1e-6))


def add_melismas(melody: Melody) -> None:
    """Split long notes into two: Chinese rising tones rise, falling tones fall; otherwise a passing
    note toward the next syllable. The lyric stays on the first note."""
    template = melody.template
    scale_pitches = [p for p in range(template.tonic_midi - 12, template.tonic_midi + 26)
                     if (p - template.tonic_midi) % 12 in template.scale]
    result: list[Note] = []
    notes = melody.notes
    for i, note in enumerate(notes):
        tone = note.syllable.tone if note.syllable is not None else None
        wants = note.duration >= 2 and not note.cadence and (note.duration >= 3 or tone in (2, 4))
        if not wants:
            result.append(note)
            continue
        index = scale_pitches.index(note.pitch) if note.pitch in scale_pitches else None
        if index is None:
            result.append(note)
            continue
        if tone == 2:
            second = scale_pitches[min(index + 1, len(scale_pitches) - 1)]
        elif tone == 4:
            second = scale_pitches[max(index - 1, 0)]
        else:
            following = notes[i + 1].pitch if i + 1 < len(notes) else note.pitch
            step = 1 if following > note.pitch else -1 if following < note.pitch else 1
            second = scale_pitches[max(0, min(len(scale_pitches) - 1, index + step))]
        first_length = max(1, note.duration // 2)
        result.append(Note(note.onset, first_length, note.pitch, note.syllable, note.strong, note.cadence))
        result.append(Note(note.onset + first_length, note.duration - first_length, second, None, False, ""))
    melody.notes = result


def compose(
    prosody: Prosody,
    text: str,
    *,
    seed: int = 0,
    form: str = "",
    theme: str = "",
    key: str | None = None,
    mode: str = "auto",
    tempo: float | None = None,
    melisma: bool = False,
    pitch_model: str = "stats",
) -> Melody:
    """Words in, melody out: template, rhythm, harmony, constrained pitch choice, optional melismas."""
    if not prosody.syllables:
        raise ConfigError("text: the poem has no syllables to sing; give it at least one word or character")
    rng = random.Random(seed)
    template = choose_template(prosody, text, form=form, theme=theme, rng=rng, key=key, mode=mode, tempo=tempo)
    notes, line_end_bars, total = place_rhythm(prosody, template)
    shift = -min(0, min(n.onset for n in notes))
    if shift:  # a pick-up before bar 0: start the piece with an (almost empty) bar
        shift = template.bar_units * math.ceil(shift / template.bar_units)
        for n in notes:
            n.onset += shift
        line_end_bars = [b + shift // template.bar_units for b in line_end_bars]
        total += shift
    melody = Melody(template, notes, total_units=total)
    melody.chords = plan_harmony(notes, line_end_bars, prosody, template, rng)
    choose_pitches(melody, rng, pitch_model=pitch_model)
    if melisma:
        add_melismas(melody)
    return melody
