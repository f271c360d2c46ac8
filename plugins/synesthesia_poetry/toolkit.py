"""The form toolkit: public building blocks for writing a verse form, the ones the built-in forms use.

A third-party plugin writes a form from these (see ``docs/plugins.md`` and the tanka example in
``examples/synesthesia-tanka-plugin``); the built-in haiku, sonnet, limerick, acrostic and 绝句/律诗 are
made of the same pieces. Language-neutral pieces come from the core's ``synesthesia.forms`` and are
re-exported here, so one import serves::

    from synesthesia.components import Form
    from synesthesia_poetry.toolkit import (VerseShape, english_conditioning, english_line_plan,
                                            first_lines, syllable_validator, verse_processors)

    TANKA = VerseShape(syllables=((5, 7, 5, 7, 7),), scheme=None, keywords=3)
    tanka = Form(name="tanka", description="Tanka: 5-7-5-7-7 syllables", language="en",
                 conditioning=english_conditioning("tanka", like="haiku"),
                 logits_processors=verse_processors(TANKA), validate=syllable_validator((5, 7, 5, 7, 7)),
                 finalize=first_lines(5), max_new_tokens=200,
                 plan=lambda request: english_line_plan(TANKA, request))

What each piece does:

Decoding (logits processors: ``processor(generated [B, T], logits [B, V]) -> logits``; a form returns a
list of them from ``logits_processors(tokenizer, request)``, applied in order, each only forbidding tokens):
- ``LineCountProcessor(tokenizer, n_lines, max_line_chars=None)``: exactly n lines, any tokenizer.
- ``SyllableLineProcessor(tokenizer, syllables=(5, 7, 5))`` or ``(tokenizer, plans=...)``: char-level
  tokenizers only; dictionary words, each line exactly its syllable count, optionally ending on a
  planned rhyme word and holding a planned theme keyword (``LinePlan``, ``verse_plans``).
- ``EnglishWordsProcessor(tokenizer)``: char-level; dictionary words only, no speaker cues (``NAME:``).
- ``ClassicalVerseProcessor(tokenizer, n_lines, n_chars, ...)``: char-level Chinese; line length and
  count, 平仄, 平水韵 rhyme, 藏头 heads, planned keyword characters.
- ``verse_processors(shape)``: the built-in recipe for an English ``VerseShape``: planned lines for a
  char-level tokenizer, the line count for others (``is_char_level``).
- For your own processor: ``RowStates`` (per-candidate state), ``per_tokenizer`` (build masks [V] once),
  ``token_pieces``/``token_mask``/``one_hot``, and ``restrict``/``forbid``, which change one row without
  ever leaving it with no token.

Validation (``validate(text, request=None) -> Validation``; compose them with ``all_of``):
- ``syllable_validator(counts)``: the lines and their syllables (CMU counts, rules for unknown words).
- ``rhyme_validator(scheme)``: end rhymes such as ``"AABBA"``; ``line_count_validator(n)``.
- ``chinese.analyse(text, n_lines, n_chars)`` for classical Chinese (line shape, rhyme, tones).

Prompting: ``english_conditioning(form, like=...)`` asks the model for English verse on the request's
theme; ``like`` names a built-in form this one writes like, so a model's primer for that form applies
(a drama-trained model's speaker cue, ``synesthesia.forms.primer_text``): a plugin's form is prompted
as the built-in one is. ``english_line_plan`` records which theme keyword each line holds.

Words: ``english_lexicon()`` (CMU words among common English ones, with syllables), ``syllables(word)``,
``line_syllables(line)``, ``rhymes(a, b)``, ``plan_rhymes(scheme, preferred)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synesthesia.components import Conditioning, FormRequest, Validation
from synesthesia.forms import (  # noqa: F401
    LineCountProcessor,
    LogitsProcessor,
    RowStates,
    Tokenizer,
    all_of,
    first_lines,
    forbid,
    is_char_level,
    line_count_validator,
    one_hot,
    per_tokenizer,
    primer_text,
    restrict,
    token_mask,
    token_pieces,
    verse_lines,
)
from synesthesia_poetry import chinese
from synesthesia_poetry.constraints import (  # noqa: F401
    ClassicalVerseProcessor,
    EnglishWordsProcessor,
    Lexicon,
    LinePlan,
    SyllableLineProcessor,
    english_lexicon,
    word_syllables,
)
from synesthesia_poetry.english import line_syllables, plan_rhymes, rhymes, scheme_accuracy, syllables  # noqa: F401

VERSE_PLANS = 8  # rhyme-word plans per batch of candidates (row r follows plan r mod 8)

# --------------------------------------------------------------------------------------------------
# Prompting and keyword plans


def english_conditioning(form: str, *, like: str | None = None,
                         any_language: bool = False) -> Callable[[FormRequest], Conditioning]:
    """A ``Form.conditioning`` for English verse: the theme's words as keywords, ``form_options.prefix`` as
    the text the poem starts with. ``like``: a built-in form this one writes like (its primer applies).
    With ``any_language`` a theme in Chinese characters asks for Chinese instead."""

    def conditioning(request: FormRequest) -> Conditioning:
        prefix = str(request.options.get("prefix", ""))
        if any_language and any(chinese.is_han(ch) for ch in request.theme):
            from synesthesia_poetry.forms import chinese_keywords

            return Conditioning(form=form, keywords=chinese_keywords(request.theme), language="zh", prefix=prefix,
                                like=like)
        keywords = [w for w in re.split(r"[\s,;]+", request.theme.strip()) if w]
        return Conditioning(form=form, keywords=keywords, language="en", prefix=prefix, like=like)

    return conditioning


@dataclass(frozen=True)
class VerseShape:
    """An English verse form for planned decoding: syllables per line (one tuple per plan variant, used in
    turn: a limerick's lines may be 8-8-5-5-8 or 9-9-6-6-9), the rhyme scheme (None: unrhymed, else one
    letter a line, e.g. ``"AABBA"``) and how many theme keywords to place."""

    syllables: tuple[tuple[int, ...], ...]
    scheme: str | None = None
    keywords: int = 3

    @property
    def n_lines(self) -> int:
        return len(self.syllables[0])


def english_keywords(request: FormRequest, limit: int) -> list[str]:
    """The theme's words a line can hold: plain lower-case words, the theme's own first."""
    return [k for k in request.keywords if re.fullmatch(r"[a-z]+", k)][:limit]


def english_line_plan(shape: VerseShape, request: FormRequest) -> list[dict[str, Any]]:
    """Which theme keyword each line holds (a ``Form.plan``): spread over the poem, the theme's own words
    first, as [{"line": i, "keyword": k}]."""
    n_lines = shape.n_lines
    words = english_keywords(request, shape.keywords)
    return [{"line": j * n_lines // len(words), "keyword": w} for j, w in enumerate(words)] if words else []


def verse_plans(shape: VerseShape, request: FormRequest, variants: int = VERSE_PLANS) -> list[list[LinePlan]]:
    """Per candidate row, a ``LinePlan`` per line: syllables, rhyme word (theme words first), keyword."""
    keywords = {p["line"]: p["keyword"] for p in english_line_plan(shape, request)}
    preferred = english_keywords(request, 8)
    plans = []
    for variant in range(variants):
        targets = shape.syllables[variant % len(shape.syllables)]
        ends: list[str | None] = [None] * len(targets)
        if shape.scheme:
            planned = plan_rhymes(shape.scheme, preferred, variant)
            taken = {letter: iter(words) for letter, words in planned.items()}
            ends = [next(taken[letter]) for letter in shape.scheme]
        lines = []
        for i, target in enumerate(targets):
            end, keyword = ends[i], keywords.get(i)
            room = target - (word_syllables(end) if end else 0) - 1
            if keyword and (keyword == end or word_syllables(keyword) > room):
                keyword = None
            # The keyword goes mid-line: half the free syllables before it, half after.
            after = (room + 1 - word_syllables(keyword)) // 2 if keyword else None
            lines.append(LinePlan(target, end, keyword, after))
        plans.append(lines)
    return plans


# --------------------------------------------------------------------------------------------------
# Decoding recipes


def verse_processors(shape: VerseShape, max_line_chars: int = 60) -> Callable[[Tokenizer, FormRequest], list]:
    """A ``Form.logits_processors`` for an English ``VerseShape``: char-level models get planned lines
    (exact syllables, rhyme words chosen before decoding, theme keywords placed); others (BPE) the line
    count, with syllables and rhyme left to the validators."""

    def processors(tokenizer: Tokenizer, request: FormRequest) -> list:
        if is_char_level(tokenizer):
            return [SyllableLineProcessor(tokenizer, plans=verse_plans(shape, request))]
        return [LineCountProcessor(tokenizer, shape.n_lines, max_line_chars=max_line_chars)]

    return processors


def english_words_processors(tokenizer: Tokenizer, blank_lines: bool = False) -> list:
    """Dictionary words and no speaker cues, for char-level English models (none for BPE)."""
    return [EnglishWordsProcessor(tokenizer, blank_lines=blank_lines)] if is_char_level(tokenizer) else []


# --------------------------------------------------------------------------------------------------
# Validators


def syllable_validator(counts: tuple[int, ...]) -> Callable[..., Validation]:
    """Exactly ``len(counts)`` lines of those syllable counts. Score: 0.3 for the line count, 0.7 shared by
    the lines whose count is right; a problem named for each line that is not."""
    counts = tuple(counts)

    def validate(text: str, request: FormRequest | None = None) -> Validation:
        lines = verse_lines(text)
        problems = []
        if len(lines) != len(counts):
            problems.append(f"{len(lines)} lines instead of {len(counts)}")
        hits = 0
        for i, (line, want) in enumerate(zip(lines, counts)):
            count = line_syllables(line)
            if count == want:
                hits += 1
            else:
                problems.append(f"line {i + 1} has {count} syllables instead of {want}")
        score = 0.3 * (len(lines) == len(counts)) + 0.7 * hits / len(counts)
        return Validation(ok=not problems, score=round(score, 4), problems=problems)

    return validate


def rhyme_validator(scheme: str, allow_identical: bool = False) -> Callable[..., Validation]:
    """The first ``len(scheme)`` lines end-rhyme as ``scheme`` says (``"ABAB"``); score: the share of
    rhyming lines that do."""

    def validate(text: str, request: FormRequest | None = None) -> Validation:
        lines = verse_lines(text)
        accuracy = scheme_accuracy(lines[: len(scheme)], scheme, allow_identical) if len(lines) >= len(scheme) else 0.0
        problems = [] if accuracy == 1.0 else [f"rhyme scheme {scheme} holds for {accuracy:.0%} of the rhyming lines"]
        return Validation(ok=accuracy == 1.0, score=round(accuracy, 4), problems=problems)

    return validate
