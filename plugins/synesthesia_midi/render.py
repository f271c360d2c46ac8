"""The ``midi`` renderer: poem -> melody.mid (+ melody.wav, + melody.json describing the setting)."""

from __future__ import annotations

from pathlib import Path

from synesthesia.components import RenderContext
from synesthesia.fileio import write_json_atomic

DEFAULT_PROGRAM = {"zh": 73, "en": 0}  # GM flute (close to a dizi) for Chinese, piano for English
DEFAULT_ACCOMPANIMENT = {"zh": "drone", "en": "chords"}


def mood_summary(template, options) -> dict:
    """How the theme was used: the mood read, from which words, what it asked for and what was kept."""
    reading = template.mood_reading
    classical = template.language == "zh"
    asked = {"mode": reading.zh_mode if classical else reading.en_mode,
             "tempo_factor": reading.tempo_factor, "register_semitones": reading.register}
    overridden = [name for name, given in (("mode", options.mode != "auto"), ("tempo", options.tempo is not None))
                  if given]
    return {
        "theme": reading.theme,
        "mood": reading.mood,
        "read_from": reading.source,  # "theme", "text" (the theme named no mood) or "none"
        "theme_words": reading.theme_words,
        "text_words": reading.text_words,
        "scores": reading.scores,
        "asked": asked,
        "chose": {"mode": template.mode, "tempo_bpm": template.tempo_bpm, "register_semitones": template.register,
                  "tonic_midi": template.tonic_midi},
        "overridden_by_options": overridden,
    }


def render(context: RenderContext) -> list[Path]:
    from .audio import render_audio
    from .melody import compose
    from .midi_file import write_midi
    from .options import MidiOptions
    from .prosody import analyze, detect_language

    options = (context.options if isinstance(context.options, MidiOptions)
               else MidiOptions(**dict(context.options or {})))
    # The text decides the language: an artist may replace an English draft with a Chinese poem.
    prosody = analyze(context.text, detect_language(context.text))
    seed = options.seed if options.seed is not None else context.seed
    melody = compose(prosody, context.text, seed=seed, form=context.form or "", theme=context.theme or "",
                     key=options.key, mode=options.mode, tempo=options.tempo, melisma=options.melisma,
                     pitch_model=options.pitch_model)
    language = prosody.language
    program = options.instrument if options.instrument is not None else DEFAULT_PROGRAM[language]
    accompaniment = options.accompaniment if options.accompaniment != "auto" else DEFAULT_ACCOMPANIMENT[language]
    out_dir = Path(context.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    midi_path = write_midi(melody, out_dir / "melody.mid", program=program, accompaniment=accompaniment)
    files = [midi_path]
    engine = None
    if options.audio:
        engine = render_audio(midi_path, out_dir / "melody.wav", engine=options.audio_engine,
                              soundfont=options.soundfont, gain=options.gain,
                              normalize=options.normalize, tail=options.tail)
        files.append(out_dir / "melody.wav")
    template = melody.template
    summary = {
        "language": language,
        "key": template.key_name,
        "tonic_midi": template.tonic_midi,
        "mode": template.mode,
        "time_signature": f"{template.beats_per_bar}/4",
        "tempo_bpm": template.tempo_bpm,
        "syllables": len(prosody.syllables),
        "notes": len(melody.notes),
        "lines": len(prosody.lines),
        "program": program,
        "accompaniment": accompaniment,
        "seed": seed,
        "audio_engine": engine,
        "pitch_model": options.pitch_model,
        "mood": mood_summary(template, options),
    }
    summary_path = out_dir / "melody.json"
    write_json_atomic(summary_path, summary)
    files.append(summary_path)
    return files
