"""Write a melody as a Standard MIDI File with mido.

Type 1 file: a conductor track (tempo, time signature, key signature), the melody track with the words as
lyric meta events (UTF-8, so Chinese survives), and an optional accompaniment track (a drone on tonic and
fifth, or the planned chord of each bar).
"""

from __future__ import annotations

from pathlib import Path

from synesthesia.fileio import atomic_path

from .melody import UNITS_PER_QUARTER, Melody

TICKS_PER_BEAT = 480
TICKS_PER_UNIT = TICKS_PER_BEAT // UNITS_PER_QUARTER
MELODY_CHANNEL = 0
ACCOMPANIMENT_CHANNEL = 1
ACCOMPANIMENT_PROGRAM = {"drone": 48, "chords": 48}  # GM "String Ensemble 1": sits under any lead
CHARSET = "utf-8"


def _to_track(events: list[tuple[int, int, object]], name: str):
    """(absolute tick, order, message) -> a mido track with delta times; ``order`` puts note-offs before
    note-ons and lyrics right before their note at equal ticks."""
    import mido

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _order, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def build_midi(melody: Melody, *, program: int, accompaniment: str = "none", velocity: int = 90):
    """A ``mido.MidiFile`` for the melody (not yet saved)."""
    import mido

    template = melody.template
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset=CHARSET)

    conductor = [
        (0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(template.tempo_bpm))),
        (0, 1, mido.MetaMessage("time_signature", numerator=template.beats_per_bar, denominator=4)),
        (0, 2, mido.MetaMessage("key_signature", key=template.key_name)),
    ]
    midi.tracks.append(_to_track(conductor, "Synesthesia"))

    lead = [(0, 0, mido.Message("program_change", channel=MELODY_CHANNEL, program=program))]
    for note in melody.notes:
        start = note.onset * TICKS_PER_UNIT
        end = (note.onset + note.duration) * TICKS_PER_UNIT
        if note.lyric is not None:
            lead.append((start, 2, mido.MetaMessage("lyrics", text=note.lyric)))
        accent = 12 if note.strong else 0
        lead.append((start, 3, mido.Message("note_on", channel=MELODY_CHANNEL, note=note.pitch,
                                            velocity=min(127, velocity - 8 + accent))))
        # Note-offs sort before note-ons at the same tick (order 1 < 3), so repeated pitches re-strike.
        lead.append((end, 1, mido.Message("note_off", channel=MELODY_CHANNEL, note=note.pitch, velocity=0)))
    midi.tracks.append(_to_track(lead, "Melody"))

    if accompaniment in ("drone", "chords"):
        midi.tracks.append(_accompaniment(melody, accompaniment))
    return midi


def _accompaniment(melody: Melody, style: str):
    import mido

    template = melody.template
    bar_ticks = template.bar_units * TICKS_PER_UNIT
    bass = template.tonic_midi - 12
    program_change = mido.Message("program_change", channel=ACCOMPANIMENT_CHANNEL, program=ACCOMPANIMENT_PROGRAM[style])
    events = [(0, 0, program_change)]
    last_tick = melody.total_units * TICKS_PER_UNIT
    n_bars = max(1, -(-last_tick // bar_ticks))
    for bar in range(n_bars):
        start, end = bar * bar_ticks, min((bar + 1) * bar_ticks, last_tick)
        if end <= start:
            break
        if style == "drone":
            pitches = [bass, bass + 7] if 7 in template.scale else [bass]
        else:
            root, tones = melody.chords[min(bar, len(melody.chords) - 1)]
            root_pitch = bass + root - (12 if root > 7 else 0)
            pitches = sorted({root_pitch} | {root_pitch + ((t - root) % 12) for t in tones})
        for p in pitches:
            events.append((start, 3, mido.Message("note_on", channel=ACCOMPANIMENT_CHANNEL, note=p, velocity=52)))
            events.append((end, 1, mido.Message("note_off", channel=ACCOMPANIMENT_CHANNEL, note=p, velocity=0)))
    return _to_track(events, "Accompaniment")


def write_midi(melody: Melody, path: Path, *, program: int, accompaniment: str = "none") -> Path:
    """Save atomically (temp file + rename) so a crash never leaves half a MIDI file."""
    midi = build_midi(melody, program=program, accompaniment=accompaniment)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        midi.save(str(tmp))
    return path


def read_midi(path: Path):
    """Open a file we wrote, with the charset its lyrics were written in."""
    import mido

    return mido.MidiFile(path, charset=CHARSET)


def midi_notes(path: Path) -> list[tuple[float, float, int, int, int]]:
    """(start seconds, end seconds, pitch, velocity, channel) of every note, for the built-in synthesizer."""
    midi = read_midi(path)
    now = 0.0
    sounding: dict[tuple[int, int], tuple[float, int]] = {}
    notes = []
    for message in midi:  # merged tracks, times in seconds
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            sounding[(message.channel, message.note)] = (now, message.velocity)
        elif message.type in ("note_off", "note_on"):
            started = sounding.pop((message.channel, message.note), None)
            if started is not None:
                notes.append((started[0], now, message.note, started[1], message.channel))
    return sorted(notes)


def midi_programs(path: Path) -> dict[int, int]:
    """Channel -> GM program from the file's program changes."""
    programs: dict[int, int] = {}
    for message in read_midi(path):
        if message.type == "program_change":
            programs.setdefault(message.channel, message.program)
    return programs
