"""The poetry plugin's writing forms: how to ask for each, constrain it, check it and tidy it.

Classical Chinese (五绝 七绝 五律 七律 藏头诗) are constrained during decoding (see ``constraints``) and
validated for line count/length, 平水韵 end rhyme and 平仄 at key positions, with the theme's keywords
planned one a line. English forms get an exact line count during decoding; for char-level models haiku,
sonnets and limericks are planned line by line (exact syllables, rhyme words chosen before decoding,
theme keywords placed), and the validators check rhyme and metre after.
Screenplay scenes (Fountain) and story fragments are structured and held to their theme by ``prose``.

Every form here is built from the public form toolkit (``synesthesia_poetry.toolkit``, with the core's
``synesthesia.forms``), the same pieces a third-party form uses.

Validators take an optional ``request`` (``validate(text, request)``) so that request-dependent forms
(acrostics, a free-verse stanza shape) can check their options; the pipeline calls ``validate(text)``,
for which the form's processors already enforce those options.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synesthesia.components import Conditioning, Form, FormRequest, GenerationRequest, SamplingSettings, Validation
from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.forms import LineCountProcessor, first_lines, is_char_level, verse_lines
from synesthesia_poetry import chinese, english
from synesthesia_poetry.toolkit import (
    ClassicalVerseProcessor,
    SyllableLineProcessor,
    VerseShape,
    english_conditioning,
    english_line_plan,
    english_words_processors,
    syllable_validator,
    verse_processors,
)

# --------------------------------------------------------------------------------------------------
# Classical Chinese


@dataclass(frozen=True)
class ClassicalForm:
    name: str
    aliases: tuple[str, ...]
    n_lines: int
    n_chars: int
    description: str


CLASSICAL = (
    ClassicalForm("五绝", ("jueju5", "wujue"), 4, 5, "五言绝句: four lines of five characters, regulated tones"),
    ClassicalForm("七绝", ("jueju7", "qijue"), 4, 7, "七言绝句: four lines of seven characters, regulated tones"),
    ClassicalForm("五律", ("lvshi5", "wulv"), 8, 5, "五言律诗: eight lines of five characters, regulated tones"),
    ClassicalForm("七律", ("lvshi7", "qilv"), 8, 7, "七言律诗: eight lines of seven characters, regulated tones"),
)
FORM_BY_SHAPE = {(f.n_lines, f.n_chars): f.name for f in CLASSICAL}


def chinese_keywords(theme: str) -> list[str]:
    """Theme → keyword list: words split at spaces/commas; a run of Han characters gives one per character."""
    keywords: list[str] = []
    for part in re.split(r"[\s,，、;；]+", theme.strip()):
        if not part:
            continue
        if all(chinese.is_han(ch) for ch in part):
            keywords.extend(part)
        else:
            keywords.append(part)
    return list(dict.fromkeys(keywords))


def line_plan(request: FormRequest, n_lines: int, *, han_only: bool = False) -> list[dict[str, Any]]:
    """The theme's keywords in line order, one a line: [{"line": i, "keyword": k}]. The theme's own
    words come first in ``request.keywords``, so they are placed before related imagery."""
    keywords = [k for k in request.keywords if not han_only or (len(k) <= 3 and all(map(chinese.is_han, k)))]
    return [{"line": i, "keyword": k} for i, k in enumerate(keywords[:n_lines])]


def _line_keywords(request: FormRequest, n_lines: int) -> list[str | None]:
    planned = {p["line"]: p["keyword"] for p in line_plan(request, n_lines, han_only=True)}
    return [planned.get(i) for i in range(n_lines)]


def _validation(report: chinese.VerseReport) -> Validation:
    ok = report.structure_ok and report.rhyme_ok and report.heads_ok
    return Validation(ok=ok, score=round(max(0.0, report.score), 4), problems=report.problems)


def _canonical_verse(text: str, n_lines: int | None, n_chars: int | None) -> str:
    """Re-punctuate a generation and drop anything after the last line, when its lines have the right shape."""
    lines = chinese.split_lines(text)
    if n_lines is not None and len(lines) >= n_lines:
        lines = lines[:n_lines]
    width = n_chars or (len(lines[0]) if lines else 0)
    if lines and all(len(line) == width for line in lines):
        return chinese.format_poem(lines)
    return text.strip()


def _int_option(request: FormRequest, name: str, default: int, allowed: tuple[int, ...]) -> int:
    value = request.options.get(name, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"form_options.{name} must be one of {allowed}, got {value!r}") from None
    if value not in allowed:
        raise ConfigError(f"form_options.{name} must be one of {allowed}, got {value!r}")
    return value


def _bool_option(request: FormRequest, name: str, default: bool) -> bool:
    value = request.options.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def classical_form(spec: ClassicalForm) -> Form:
    def conditioning(request: FormRequest) -> Conditioning:
        return Conditioning(form=spec.name, keywords=chinese_keywords(request.theme), language="zh",
                            prefix=str(request.options.get("prefix", "")))

    def validate(text: str, request: FormRequest | None = None) -> Validation:
        return _validation(chinese.analyse(text, spec.n_lines, spec.n_chars))

    def processors(tokenizer, request: FormRequest) -> list:
        pattern = request.options.get("pattern")
        if pattern:
            chinese.find_pattern(str(pattern), spec.n_lines, spec.n_chars)  # ConfigError-style message if bad
        # A prefix is part of the prompt, not of the generated tokens: the processor starts after it.
        return [ClassicalVerseProcessor(tokenizer, spec.n_lines, spec.n_chars, pattern=pattern or None,
                                        prefix=str(request.options.get("prefix", "")),
                                        tones=_bool_option(request, "tones", True),
                                        rhyme=_bool_option(request, "rhyme", True),
                                        line_keywords=_line_keywords(request, spec.n_lines))]

    return Form(
        name=spec.name, description=spec.description, language="zh", conditioning=conditioning,
        validate=validate, logits_processors=processors,
        plan=lambda request: line_plan(request, spec.n_lines, han_only=True),
        finalize=lambda text: _canonical_verse(text, spec.n_lines, spec.n_chars),
        aliases=spec.aliases, max_new_tokens=spec.n_lines * (spec.n_chars + 2) + 4,
    )


def _cangtou_heads(request: FormRequest) -> str:
    heads = "".join(ch for ch in str(request.options.get("head") or request.theme) if chinese.is_han(ch))
    if len(heads) < 2:
        raise ConfigError("藏头诗 needs at least two Chinese characters to hide: set form_options.head=… or theme=…")
    return heads


def cangtou_form() -> Form:
    """藏头诗: the given characters begin the lines; one line per character, 5 or 7 characters a line."""

    def shape(request: FormRequest) -> tuple[str, int, int]:
        heads = _cangtou_heads(request)
        return heads, len(heads), _int_option(request, "chars", 7, (5, 7))

    def conditioning(request: FormRequest) -> Conditioning:
        heads, n_lines, n_chars = shape(request)
        # The model knows the underlying form's control token, not 藏头诗.
        form = FORM_BY_SHAPE.get((n_lines, n_chars), "七绝" if n_chars == 7 else "五绝")
        keywords = chinese_keywords(str(request.options.get("keywords", ""))) or list(dict.fromkeys(heads))
        return Conditioning(form=form, keywords=keywords, language="zh")

    def validate(text: str, request: FormRequest | None = None) -> Validation:
        if request is not None:
            heads, n_lines, n_chars = shape(request)
            return _validation(chinese.analyse(text, n_lines, n_chars, heads=heads))
        return _validation(chinese.analyse(text, None, None))

    def processors(tokenizer, request: FormRequest) -> list:
        heads, n_lines, n_chars = shape(request)
        return [ClassicalVerseProcessor(tokenizer, n_lines, n_chars, heads=heads,
                                        pattern=request.options.get("pattern") or None,
                                        line_keywords=_line_keywords(request, n_lines))]

    return Form(
        name="藏头诗", description="藏头诗 acrostic: form_options.head (or the theme) begins the lines",
        language="zh", conditioning=conditioning, validate=validate, logits_processors=processors,
        finalize=lambda text: _canonical_verse(text, None, None), aliases=("cangtou",), max_new_tokens=80,
    )


# --------------------------------------------------------------------------------------------------
# English verse


HAIKU_SYLLABLES = (5, 7, 5)

VERSE_SHAPES = {
    "haiku": VerseShape((HAIKU_SYLLABLES,), None, 3),
    "limerick": VerseShape(((8, 8, 5, 5, 8), (9, 9, 6, 6, 9)), "AABBA", 3),
    "sonnet": VerseShape(((10,) * 14,), "ABABCDCDEFEFGG", 4),
}

validate_haiku = syllable_validator(HAIKU_SYLLABLES)


SONNET_SCHEME = "ABABCDCDEFEFGG"
LIMERICK_SCHEME = "AABBA"


def validate_sonnet(text: str, request: FormRequest | None = None) -> Validation:
    lines = verse_lines(text)
    problems = []
    if len(lines) != 14:
        problems.append(f"{len(lines)} lines instead of 14")
    rhyme = english.scheme_accuracy(lines[:14], SONNET_SCHEME) if len(lines) >= 14 else 0.0
    if rhyme < 1.0:
        problems.append(f"rhyme scheme ABAB CDCD EFEF GG holds for {rhyme:.0%} of the rhyming lines")
    metre = sum(english.iambic_score(line) for line in lines[:14]) / max(1, min(14, len(lines)))
    if metre < 0.6:
        problems.append(f"iambic pentameter score {metre:.2f} (< 0.6)")
    score = 0.3 * (len(lines) == 14) + 0.4 * rhyme + 0.3 * metre
    ok = len(lines) == 14 and rhyme >= 0.8 and metre >= 0.6
    return Validation(ok=ok, score=round(score, 4), problems=problems)


def validate_limerick(text: str, request: FormRequest | None = None) -> Validation:
    lines = verse_lines(text)
    problems = []
    if len(lines) != 5:
        problems.append(f"{len(lines)} lines instead of 5")
    rhyme = english.scheme_accuracy(lines[:5], LIMERICK_SCHEME, allow_identical=True) if len(lines) >= 5 else 0.0
    if rhyme < 1.0:
        problems.append(f"rhyme scheme AABBA holds for {rhyme:.0%} of the rhyming lines")
    counts = [english.line_syllables(line) for line in lines[:5]]
    ranges = [(7, 11), (7, 11), (4, 7), (4, 7), (7, 11)]
    fits = sum(lo <= c <= hi for c, (lo, hi) in zip(counts, ranges))
    for i, (c, (lo, hi)) in enumerate(zip(counts, ranges)):
        if not lo <= c <= hi:
            problems.append(f"line {i + 1} has {c} syllables (a limerick's has {lo}-{hi})")
    score = 0.2 * (len(lines) == 5) + 0.5 * rhyme + 0.3 * fits / 5
    return Validation(ok=len(lines) == 5 and rhyme == 1.0 and fits >= 4, score=round(score, 4), problems=problems)


def _acrostic_word(request: FormRequest) -> str:
    word = "".join(ch for ch in str(request.options.get("word") or request.theme) if ch.isalpha())
    if len(word) < 2:
        raise ConfigError("acrostic needs a word of at least two letters: set form_options.word=… or theme=…")
    return word.upper()


def validate_acrostic(text: str, request: FormRequest | None = None) -> Validation:
    lines = verse_lines(text)
    problems = []
    if len(lines) < 2:
        problems.append("an acrostic needs at least two lines")
    if request is not None:
        word = _acrostic_word(request)
        initials = "".join(line[0].upper() for line in lines if line)
        if len(lines) != len(word):
            problems.append(f"{len(lines)} lines instead of {len(word)} (one per letter of {word})")
        if initials[: len(word)] != word:
            problems.append(f"the lines begin {initials!r}, not {word!r}")
        hits = sum(a == b for a, b in zip(initials, word)) / len(word)
    else:
        hits = 1.0 if lines else 0.0
    return Validation(ok=not problems, score=round(0.5 * hits + 0.5 * (not problems), 4), problems=problems)


def acrostic_processors(tokenizer, request: FormRequest) -> list:
    return english_words_processors(tokenizer) + [
        LineCountProcessor(tokenizer, len(_acrostic_word(request)), max_line_chars=80)]


def _stanza_shape(request: FormRequest | None) -> list[int] | None:
    if request is None:
        return None
    shape = request.options.get("stanzas")
    if shape is None:
        return None
    if isinstance(shape, str):
        shape = [s for s in re.split(r"[\s,\-]+", shape) if s]
    try:
        sizes = [int(s) for s in shape]
    except (TypeError, ValueError):
        raise ConfigError(
            f"form_options.stanzas must be line counts per stanza like [3, 3, 2], got {shape!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"form_options.stanzas must be positive line counts, got {shape!r}")
    return sizes


def stanzas(text: str) -> list[list[str]]:
    blocks = re.split(r"\n\s*\n", text.strip())
    return [verse_lines(b) for b in blocks if verse_lines(b)]


def validate_free(text: str, request: FormRequest | None = None) -> Validation:
    lines = verse_lines(text)
    problems = []
    if len(lines) < 2:
        problems.append("free verse needs at least two lines")
    shape = _stanza_shape(request)
    score = 1.0 if len(lines) >= 2 else 0.0
    if shape:
        got = [len(s) for s in stanzas(text)]
        if got != shape:
            problems.append(f"stanza shape {got} instead of {shape}")
            score = 0.5 * (sum(got) == sum(shape))
    return Validation(ok=not problems, score=score, problems=problems)


def free_processors(tokenizer, request: FormRequest) -> list:
    shape = _stanza_shape(request)
    lines = sum(shape) if shape else request.options.get("lines")
    return [LineCountProcessor(tokenizer, int(lines))] if lines else []


# --------------------------------------------------------------------------------------------------
# Screenplay (Fountain) and story

SCENE_HEADING = re.compile(r"^(?:INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[.\s]|^\.[A-Z0-9]", re.IGNORECASE)
TRANSITION = re.compile(r"^[A-Z\s]+TO:$|^>")


def is_character_cue(line: str) -> bool:
    name = re.sub(r"\s*\(.*\)\s*$", "", line.strip()).rstrip("^").strip()
    return bool(name) and (line.strip().startswith("@") or (name == name.upper() and re.search(r"[A-Z]", name)
                                                              and not SCENE_HEADING.match(name)
                                                              and not TRANSITION.match(line.strip())
                                                              and len(name) <= 40))


def fountain_elements(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each element: scene_heading, action, character, parenthetical, dialogue, transition."""
    elements: list[tuple[str, str]] = []
    blocks = re.split(r"\n\s*\n", text.strip())
    for block in blocks:
        lines = [line.rstrip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        first = lines[0].strip()
        if SCENE_HEADING.match(first) and len(lines) == 1:
            elements.append(("scene_heading", first.lstrip(".").upper()))
        elif TRANSITION.match(first) and len(lines) == 1:
            elements.append(("transition", first.lstrip(">").strip()))
        elif len(lines) >= 2 and is_character_cue(first):
            elements.append(("character", first.lstrip("@")))
            for line in lines[1:]:
                s = line.strip()
                elements.append(("parenthetical" if s.startswith("(") and s.endswith(")") else "dialogue", s))
        else:
            elements.append(("action", "\n".join(line.strip() for line in lines)))
    return elements


# Validators, conditioning and the decoding state machine of the prose forms live in ``prose``.
from synesthesia_poetry import prose  # noqa: E402
from synesthesia_poetry.prose import (  # noqa: E402,F401
    SENTENCE_END,
    finalize_screenplay,
    finalize_story,
    screenplay_conditioning,
    validate_screenplay,
    validate_story,
)

# --------------------------------------------------------------------------------------------------
# Registry


ENGLISH_VERSE = (
    ("haiku", "Haiku: three lines of 5, 7 and 5 syllables", validate_haiku, 128),
    ("sonnet", "Shakespearean sonnet: 14 lines, ABAB CDCD EFEF GG, iambic pentameter", validate_sonnet, 860),
    ("limerick", "Limerick: five lines rhyming AABBA", validate_limerick, 290),
)


def english_verse(name: str, description: str, validate: Callable, max_new_tokens: int) -> Form:
    """A planned English verse form (``VERSE_SHAPES[name]``) from the toolkit's pieces."""
    shape = VERSE_SHAPES[name]
    return Form(name=name, description=description, language="en", conditioning=english_conditioning(name),
                validate=validate, logits_processors=verse_processors(shape), finalize=first_lines(shape.n_lines),
                max_new_tokens=max_new_tokens, plan=lambda request: english_line_plan(shape, request))


def all_forms() -> list[Form]:
    forms = [classical_form(spec) for spec in CLASSICAL] + [cangtou_form()]
    forms += [english_verse(name, description, validate, max_new_tokens)
              for name, description, validate, max_new_tokens in ENGLISH_VERSE]
    forms += [
        Form(name="acrostic", description="Acrostic: form_options.word (or the theme) spelt by the first letters",
             language="en", conditioning=english_conditioning("acrostic"), validate=validate_acrostic,
             logits_processors=acrostic_processors, finalize=lambda t: "\n".join(verse_lines(t)),
             max_new_tokens=400),
        Form(name="free", description="Free verse; form_options.stanzas=[3,3,2] fixes a stanza shape",
             language=None, conditioning=english_conditioning("free", any_language=True), validate=validate_free,
             logits_processors=free_processors, finalize=lambda t: t.strip(), max_new_tokens=300),
        prose.screenplay_form(),
        prose.story_form(),
    ]
    return forms


# --------------------------------------------------------------------------------------------------
# Regenerating one line


def regenerate_line(form: Form, text: str, index: int, loaded: Any, request: FormRequest | None = None,
                    sampling: SamplingSettings | None = None, n: int = 8) -> tuple[str, Validation]:
    """Write line ``index`` (0-based) of a poem again, keeping the others; return (new text, verdict).

    The lines before it become the prompt's prefix; for classical forms the decoding is constrained to
    the poem's pattern and rhyme group (read from the other lines) and stops after the line. Of ``n``
    candidates, the one that makes the best-scoring whole poem replaces the line.
    ``loaded`` is a ``LoadedGenerator`` (e.g. the transformer plugin's).
    """
    request = request or FormRequest()
    sampling = sampling or SamplingSettings(max_new_tokens=64)
    verse = form.language == "zh"
    lines = chinese.split_lines(text) if verse else verse_lines(text)
    if not 0 <= index < len(lines):
        raise SynesthesiaError(f"line index {index} is out of range: the poem has {len(lines)} lines")
    conditioning = form.conditioning(request)
    if verse:
        width = len(lines[0])
        before = (chinese.format_poem(lines[:index] + ["X" * width]))[: -(width + 1)] if index else ""
        report = chinese.analyse(text, len(lines), width)
        others = [line[-1] for i, line in enumerate(lines) if i % 2 == 1 and i != index]
        shared = chinese.shared_rhyme_groups(others) if others else frozenset()
        groups = [g for g in shared if chinese.rhyme_table().group_tone[g] == chinese.PING] or None
        heads = _cangtou_heads(request) if form.name == "藏头诗" else ""

        def make(tokenizer):
            return [ClassicalVerseProcessor(tokenizer, len(lines), width, prefix=before, stop_after_line=index,
                                            pattern=report.pattern, rhyme_groups=groups, heads=heads)]
    else:
        before = "\n".join(lines[:index]) + ("\n" if index else "")

        def make(tokenizer):
            if form.name == "haiku" and index < 3 and is_char_level(tokenizer):
                return [SyllableLineProcessor(tokenizer, (HAIKU_SYLLABLES[index],))]
            return english_words_processors(tokenizer) + [LineCountProcessor(tokenizer, 1, max_line_chars=80)]

    conditioning = Conditioning(form=conditioning.form, keywords=conditioning.keywords,
                                language=conditioning.language, prefix=conditioning.prefix + before)
    raw = loaded.generate(GenerationRequest(conditioning=conditioning, sampling=sampling, n=n,
                                            make_logits_processors=make))
    chosen: tuple[tuple[bool, float], str, Validation] | None = None
    for candidate in raw:
        # Generators may hand back the prefix with the new text (the transformer plugin does).
        if conditioning.prefix and candidate.startswith(conditioning.prefix):
            candidate = candidate[len(conditioning.prefix):]
        new_lines = chinese.split_lines(candidate) if verse else verse_lines(candidate)
        if not new_lines:
            continue
        joined_lines = lines[:index] + [new_lines[0]] + lines[index + 1:]
        joined = chinese.format_poem(joined_lines) if verse else "\n".join(joined_lines)
        verdict = form.validate(joined)
        if chosen is None or (verdict.ok, verdict.score) > chosen[0]:
            chosen = ((verdict.ok, verdict.score), joined, verdict)
    if chosen is None:
        raise SynesthesiaError(f"no candidate for line {index + 1} came back from the model; try another seed")
    return chosen[1], chosen[2]
