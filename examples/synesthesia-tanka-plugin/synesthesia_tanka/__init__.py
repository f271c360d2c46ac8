"""An example Synesthesia form plugin: the tanka, five lines of 5, 7, 5, 7 and 7 syllables.

Built only from the public form toolkit (``synesthesia_poetry.toolkit``, which re-exports the core's
``synesthesia.forms``): the decoding constraint, the validator, the keyword plan and the prompt are the
same pieces the built-in haiku uses. Install it (``pip install examples/synesthesia-tanka-plugin``) and
``synesthesia run form=tanka theme="autumn river"`` writes one.
"""

from __future__ import annotations

import synesthesia
from synesthesia.components import Form, FormRequest

__version__ = "0.1.0"

TANKA_SYLLABLES = (5, 7, 5, 7, 7)


def tanka_form() -> Form:
    # Imported here, not at the top: the hook runs at every `synesthesia` start, the toolkit only when used.
    from synesthesia_poetry.toolkit import (
        LineCountProcessor,
        SyllableLineProcessor,
        VerseShape,
        english_conditioning,
        english_line_plan,
        first_lines,
        is_char_level,
        syllable_validator,
        verse_plans,
    )

    # Syllables per line (one tuple: every candidate follows it), no rhyme scheme, up to 3 theme words placed.
    shape = VerseShape(syllables=(TANKA_SYLLABLES,), scheme=None, keywords=3)

    def processors(tokenizer, request: FormRequest) -> list:
        # A char-level model (one token per character) can be held to exact syllables, spelling only
        # dictionary words, with the theme's words placed mid-line; a BPE model is held to five lines and
        # the validator checks its syllables (the pipeline then ranks candidates).
        if is_char_level(tokenizer):
            return [SyllableLineProcessor(tokenizer, plans=verse_plans(shape, request))]
        return [LineCountProcessor(tokenizer, len(TANKA_SYLLABLES), max_line_chars=60)]

    return Form(
        name="tanka",
        description="Tanka: five lines of 5, 7, 5, 7 and 7 syllables",
        language="en",
        # like="haiku": no model was trained on tankas; a model's primer for haiku (a drama-trained model is
        # prompted with a speaker's cue, so it writes verse, not cues) serves the tanka too.
        conditioning=english_conditioning("tanka", like="haiku"),
        logits_processors=processors,
        validate=syllable_validator(TANKA_SYLLABLES),
        finalize=first_lines(len(TANKA_SYLLABLES)),
        plan=lambda request: english_line_plan(shape, request),
        max_new_tokens=200,
        aliases=("短歌",),
    )


@synesthesia.hookimpl
def register_forms(register):
    register(tanka_form())
