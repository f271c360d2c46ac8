"""The form toolkit's language-neutral half: what any form's decoding constraints and validators build on.

A form (``synesthesia.components.Form``) gives the pipeline ``logits_processors(tokenizer, request)``: a
list of callables ``processor(generated [B, T], logits [B, V]) -> logits`` applied in order at every
decoding step. They compose by masking: each one only forbids tokens (sets ``-inf``), so a list of them
allows what all of them allow. This module holds the pieces such processors share:

- ``Tokenizer`` (the protocol a processor may rely on) and ``LogitsProcessor``;
- ``per_tokenizer``: build data from a tokenizer's vocabulary (masks, token texts) once per tokenizer;
- ``token_pieces``, ``token_mask``: the vocabulary as text and as boolean masks [V];
- ``restrict`` / ``forbid``: change one row's logits without ever leaving it without a token;
- ``RowStates``: per-candidate state kept in step with the tokens generated so far;
- ``LineCountProcessor``: exactly N lines, for any tokenizer (char-level or BPE);
- validators that compose (``line_count_validator``, ``all_of``) and ``verse_lines``/``first_lines``;
- ``primer_text``: the text a model's checkpoint asks to be prompted with before a form's poem.

The language-specific half (syllables, dictionary words, rhyme, 平仄) is the poetry plugin's public
``synesthesia_poetry.toolkit``; ``docs/plugins.md`` walks through writing a form with both.
torch is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from synesthesia.components import LogitsProcessor, Tokenizer, Validation

__all__ = [
    "LogitsProcessor", "Tokenizer", "per_tokenizer", "forget_tokenizer", "token_pieces", "token_mask", "one_hot",
    "restrict", "forbid",
    "RowStates", "is_char_level", "token_line_parts", "LineCountProcessor", "verse_lines", "first_lines",
    "line_count_validator", "all_of", "primer_text",
]

# --------------------------------------------------------------------------------------------------
# Per-tokenizer data, built once

_BY_TOKENIZER: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()
_BY_ID: dict[int, tuple[Any, dict]] = {}  # tokenizers that cannot be weakly referenced (kept alive)


def _store(tokenizer) -> dict:
    try:
        return _BY_TOKENIZER.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable or not hashable
        entry = _BY_ID.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:
            entry = _BY_ID[id(tokenizer)] = (tokenizer, {})
        return entry[1]


def per_tokenizer(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorator: ``build(tokenizer)`` runs once per tokenizer object; later calls return the same result.

    For what a processor derives from the whole vocabulary (masks [V], token texts): building it costs
    O(V) Python calls, a decoding step then costs a few tensor operations. The result must not hold the
    tokenizer itself (the cache is weak, so a tokenizer that goes away takes its data with it)."""

    @functools.wraps(build)
    def cached(tokenizer):
        store = _store(tokenizer)
        try:
            return store[build]
        except KeyError:
            value = store[build] = build(tokenizer)
            return value

    return cached


def forget_tokenizer(tokenizer) -> None:
    """Drop everything ``per_tokenizer`` functions built for ``tokenizer`` (a benchmark timing the build)."""
    try:
        _BY_TOKENIZER.pop(tokenizer, None)
    except TypeError:
        pass
    _BY_ID.pop(id(tokenizer), None)


@per_tokenizer
def token_pieces(tokenizer: Tokenizer) -> list[str]:
    """Every token's text, ``tokenizer.id_to_piece(i)`` for i in range(vocab_size)."""
    return [str(tokenizer.id_to_piece(i)) for i in range(int(tokenizer.vocab_size))]


def token_mask(tokenizer: Tokenizer, accept: Callable[[str], bool]):
    """A boolean mask [V]: the tokens whose piece ``accept`` takes (``token_mask(tok, str.isalpha)``)."""
    import torch

    return torch.tensor([bool(accept(p)) for p in token_pieces(tokenizer)], dtype=torch.bool)


def one_hot(like, token_id: int):
    """A boolean mask shaped like ``like`` [V] with only ``token_id`` set."""
    import torch

    mask = torch.zeros_like(like, dtype=torch.bool)
    mask[token_id] = True
    return mask


# --------------------------------------------------------------------------------------------------
# Masking one row


def restrict(logits, row: int, allowed, finite=None) -> bool:
    """Allow only ``allowed`` [V] (bool) in ``logits[row]``, among the tokens still finite there.

    If that would leave the row without any token (an earlier processor forbade them all), the row is
    left as it is and False is returned, so the caller can relax its constraint; else True. ``finite`` is
    ``torch.isfinite(logits)`` taken once for the whole batch before any row is changed (optional)."""
    import torch

    keep = allowed & (torch.isfinite(logits[row]) if finite is None else finite[row])
    if not bool(keep.any()):
        return False
    logits[row].masked_fill_(~keep, float("-inf"))
    return True


def forbid(logits, row: int, token_ids, finite=None) -> bool:
    """Forbid ``token_ids`` (a list of ids, or a bool mask [V]) in ``logits[row]`` unless nothing else
    would be left; returns whether they were forbidden."""
    import torch

    base = torch.isfinite(logits[row]) if finite is None else finite[row]
    allowed = torch.ones_like(base)
    allowed[token_ids] = False
    return restrict(logits, row, allowed, finite)


# --------------------------------------------------------------------------------------------------
# Per-row decoding state


class RowStates:
    """Per-row decoding state kept in step with the tokens generated so far.

    ``new_row()`` makes a row's state, ``step(state, token_id)`` advances it by one token. ``sync(generated)``
    feeds each row's newest token to ``step`` and returns the states; a batch size or length that is not
    the next step (a new generation, or a processor reused) rebuilds every row from the whole history."""

    def __init__(self, new_row: Callable[[], Any], step: Callable[[Any, int], None]):
        self.new_row = new_row
        self.step = step
        self.rows: list = []
        self._seen = -1

    def sync(self, generated) -> list:
        batch, length = int(generated.shape[0]), int(generated.shape[1]) if generated.dim() == 2 else 0
        if length == 0 or length != self._seen + 1 or len(self.rows) != batch:
            self.rows = [self.new_row() for _ in range(batch)]
            for row in range(batch):
                for tid in generated[row].tolist() if length else []:
                    self.step(self.rows[row], int(tid))
        else:
            for row, tid in enumerate(generated[:, -1].tolist()):
                self.step(self.rows[row], int(tid))
        self._seen = length
        return self.rows


def is_char_level(tokenizer: Tokenizer) -> bool:
    """One token per character (``kind == "char"``): letter- and syllable-level constraints apply."""
    return getattr(tokenizer, "kind", None) == "char"


# --------------------------------------------------------------------------------------------------
# Line count, for any tokenizer


@per_tokenizer
def token_line_parts(tokenizer: Tokenizer) -> list[list[str]]:
    """Per token, its decoded text split at line breaks (decoded, so byte-level BPE tokens work too)."""
    return [tokenizer.decode([i]).split("\n") for i in range(int(tokenizer.vocab_size))]


class LineCountProcessor:
    """Exactly ``n_lines`` lines: no ``<eos>`` before the last line has begun, ``<eos>`` once it has ended.

    With ``max_line_chars``, a line that has grown that long is ended: only tokens holding a line break
    (or ``<eos>`` on the last line) are allowed. Blank lines (stanza breaks) are not counted as lines.
    Works with any ``Tokenizer`` (a BPE token may hold several line breaks).
    """

    def __init__(self, tokenizer: Tokenizer, n_lines: int, max_line_chars: int | None = None):
        self.n_lines = n_lines
        self.max_line_chars = max_line_chars
        self.eos_id = int(tokenizer.eos_id)
        self.parts = token_line_parts(tokenizer)
        self.breaks = _line_breaks(tokenizer)
        self._eos = one_hot(self.breaks, self.eos_id)
        self._break_or_eos = self.breaks | self._eos
        # per row: [finished lines, current line has text, its length]
        self.tracker = RowStates(lambda: [0, False, 0], self._advance)

    def _advance(self, row: list, token_id: int) -> None:
        parts = self.parts[token_id] if 0 <= token_id < len(self.parts) else [""]
        for part in parts[:-1]:
            if row[1] or part.strip():
                row[0] += 1
            row[1], row[2] = False, 0
        row[1] = row[1] or bool(parts[-1].strip())
        row[2] += len(parts[-1])

    def __call__(self, generated, logits):
        import torch

        finite = torch.isfinite(logits)
        for row, (done, open_line, length) in enumerate(self.tracker.sync(generated)):
            if done >= self.n_lines:
                restrict(logits, row, self._eos, finite)
                continue
            too_long = self.max_line_chars is not None and open_line and length >= self.max_line_chars
            if too_long and done == self.n_lines - 1:
                if restrict(logits, row, self._break_or_eos, finite):
                    continue
            elif too_long and restrict(logits, row, self.breaks, finite):
                continue
            if done < self.n_lines - 1 or not open_line:
                forbid(logits, row, [self.eos_id], finite)
        return logits


@per_tokenizer
def _line_breaks(tokenizer: Tokenizer):
    import torch

    return torch.tensor([len(p) > 1 for p in token_line_parts(tokenizer)], dtype=torch.bool)  # [V] tokens with "\n"


# --------------------------------------------------------------------------------------------------
# Validators that compose


def verse_lines(text: str) -> list[str]:
    """The text's non-blank lines, stripped."""
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def first_lines(n: int) -> Callable[[str], str]:
    """A ``Form.finalize``: keep the first ``n`` lines (blank lines dropped) when there are that many."""

    def finalize(text: str) -> str:
        lines = verse_lines(text)
        return "\n".join(lines[:n]) if len(lines) >= n else text.strip()

    return finalize


Validator = Callable[..., Validation]  # validate(text, request=None) -> Validation


def line_count_validator(n_lines: int) -> Validator:
    """Exactly ``n_lines`` non-blank lines."""

    def validate(text: str, request=None) -> Validation:
        got = len(verse_lines(text))
        ok = got == n_lines
        return Validation(ok=ok, score=float(ok), problems=[] if ok else [f"{got} lines instead of {n_lines}"])

    return validate


def all_of(*validators: Validator, weights: Sequence[float] | None = None) -> Validator:
    """One validator from several: ok when every one is ok, the problems of all of them, and the score
    their weighted mean (equal weights unless given)."""
    if not validators:
        raise ValueError("all_of needs at least one validator")
    weights = list(weights) if weights is not None else [1.0] * len(validators)
    if len(weights) != len(validators) or sum(weights) <= 0:
        raise ValueError("all_of: one positive weight per validator")

    def validate(text: str, request=None) -> Validation:
        verdicts = [v(text, request) for v in validators]
        score = sum(w * v.score for w, v in zip(weights, verdicts)) / sum(weights)
        return Validation(ok=all(v.ok for v in verdicts), score=round(score, 4),
                          problems=[p for v in verdicts for p in v.problems])

    return validate


# --------------------------------------------------------------------------------------------------
# Primers


def primer_text(primer: dict | None, conditioning) -> str:
    """The text a model is prompted with before a poem, not part of it, from its checkpoint's
    ``meta.primer`` ({"text": ..., "forms": [...]}): a drama-trained model is given a speaker's cue so it
    writes that speaker's lines rather than a cue of its own.

    It applies to the forms the checkpoint lists, and to any form whose conditioning says it writes
    ``like`` one of them (``Conditioning(form="tanka", like="haiku")``), so a plugin's form gets the same
    primer as the built-in form it resembles. Empty when none applies."""
    primer = dict(primer or {})
    forms = primer.get("forms") or []
    wanted = [conditioning.form, getattr(conditioning, "like", None)]
    return str(primer.get("text", "")) if any(f is not None and f in forms for f in wanted) else ""
