"""Logits processors that make a model write in form, the way Jiuge constrains decoding.

``ClassicalVerseProcessor`` (绝句/律诗/藏头诗, char-level tokenizers):
- exact line length and count: after 5 or 7 characters it forces ``，`` (odd lines) or ``。`` + line break
  (even lines), and ``<eos>`` after the last line; punctuation is placed by the form, never sampled;
- 平仄 at the key positions (2nd/4th/6th and line ends) following one standard pattern: the candidate
  patterns are narrowed per row from the tones actually written, so the first line picks its pattern
  (or ``pattern=`` fixes one);
- end rhyme: every rhyming line ends in the 平水韵 group set by the first rhyming line (a rhyme
  character is not reused);
- 藏头诗: the given characters begin the lines;
- the theme (lexically constrained decoding): each line may have a planned keyword character. It is
  favoured while the line is being written and forced at the last position where it still fits the
  line's tones (never the line's last character, which the rhyme and line-end tone keep), so every
  planned keyword lands in its line and the form still holds exactly;
- filler: 不 and 無 are discouraged and allowed once a poem (the model used 不 for 6.3% of characters,
  real Tang poets for 2.0%).

Masks are boolean tensors [V] built once per tokenizer (from ``tokenizer.id_to_piece``, cached by
``synesthesia.forms.per_tokenizer``), so a step costs a few tensor ORs/ANDs per row, and every row is
masked through ``synesthesia.forms.restrict``. A processor never leaves a row without an allowed token: when
the constraints and the logits (e.g. ``-inf`` from earlier processors) leave nothing, it relaxes the
rhyme, then the tone, then everything, for that position only.

``LineCountProcessor`` (English forms, any tokenizer; it lives in ``synesthesia.forms``): forbids ``<eos>``
before the form's line count and forces it after. Metre and rhyme of English forms are checked by the
validators (reject-and-rank).

For char-level English models, ``EnglishWordsProcessor`` keeps every word a dictionary word (CMU) and
keeps out a drama corpus's speaker cues (``HASTINGS:``: capitals only at a word's start, no colon);
``SyllableLineProcessor`` does the same and also makes each line exactly its syllable count (haiku).
BPE tokens do not line up with letters or syllables, so those models get the validators only.

Plugin authors use these through the documented ``synesthesia_poetry.toolkit``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from synesthesia.forms import (  # noqa: F401
    LineCountProcessor,
    RowStates,
    forbid,
    is_char_level,
    one_hot,
    per_tokenizer,
    restrict,
    token_line_parts,
    token_pieces,
)
from synesthesia_poetry import chinese

COMMA, FULL_STOP, NEWLINE = "，", "。", "\n"
KEYWORD_BIAS = 1.5  # logit bonus for a line's planned keyword before it is forced at its last place
FILLER_CHARS = "不無无"  # at most one a poem, and discouraged before that
FILLER_PENALTY = 0.5
MAX_KEYWORD_USES = 2  # a planned keyword character is written at most twice a poem
_PUNCT_PIECES = set("，。！？；：、,.!?;: \n\t")

# --------------------------------------------------------------------------------------------------
# Per-tokenizer masks


@dataclass
class ChineseVocab:
    """Boolean masks over a tokenizer's vocabulary [V] for classical verse."""

    pieces: list[str]
    content: Any  # [V] Han characters with a known tone
    ping: Any  # [V] characters that can be 平
    ze: Any  # [V] characters that can be 仄
    group_masks: dict[str, Any]  # 平 rhyme group → [V]
    rhymable: Any  # [V] characters in some 平 rhyme group
    char_ids: dict[str, int]
    eos_id: int | None
    comma_id: int | None
    stop_id: int | None
    newline_id: int | None
    _union_cache: dict[frozenset, Any] = field(default_factory=dict)

    def rhyme_mask(self, groups: frozenset[str]):
        mask = self._union_cache.get(groups)
        if mask is None:
            import torch

            mask = torch.zeros_like(self.content)
            for g in groups:
                if g in self.group_masks:
                    mask |= self.group_masks[g]
            self._union_cache[groups] = mask
        return mask


@per_tokenizer
def chinese_vocab(tokenizer) -> ChineseVocab:
    """Build (once per tokenizer) the masks for classical verse from ``tokenizer.id_to_piece``."""
    import torch

    size = int(tokenizer.vocab_size)
    pieces = token_pieces(tokenizer)
    content = torch.zeros(size, dtype=torch.bool)
    ping = torch.zeros(size, dtype=torch.bool)
    ze = torch.zeros(size, dtype=torch.bool)
    group_ids: dict[str, list[int]] = {}
    char_ids: dict[str, int] = {}
    for i, piece in enumerate(pieces):
        if len(piece) != 1:
            continue
        char_ids.setdefault(piece, i)
        tone_set = chinese.tones(piece)
        if not tone_set:
            continue
        content[i] = True
        ping[i] = chinese.PING in tone_set
        ze[i] = chinese.ZE in tone_set
        for g in chinese.rhyme_groups(piece, chinese.PING):
            group_ids.setdefault(g, []).append(i)
    group_masks = {}
    for g, ids in group_ids.items():
        mask = torch.zeros(size, dtype=torch.bool)
        mask[torch.tensor(ids)] = True
        group_masks[g] = mask
    rhymable = torch.zeros(size, dtype=torch.bool)
    for mask in group_masks.values():
        rhymable |= mask
    eos = getattr(tokenizer, "eos_id", None)
    return ChineseVocab(
        pieces=pieces, content=content, ping=ping, ze=ze, group_masks=group_masks, rhymable=rhymable,
        char_ids=char_ids,
        eos_id=int(eos) if eos is not None else None,
        comma_id=char_ids.get(COMMA, char_ids.get(",")),
        stop_id=char_ids.get(FULL_STOP, char_ids.get(".")),
        newline_id=char_ids.get(NEWLINE),
    )


# --------------------------------------------------------------------------------------------------
# Classical verse


@dataclass
class _RowState:
    line: int = 0
    pos: int = 0  # characters written in the current line
    punct: list[int] = field(default_factory=list)  # punctuation ids still to force after this line
    patterns: list[chinese.TonalPattern] = field(default_factory=list)
    rhyme: frozenset[str] | None = None  # candidate rhyme groups, fixed by the first rhyming line
    used_rhymes: set[int] = field(default_factory=set)
    done: bool = False
    keyword_placed: bool = False  # the current line's planned keyword has been written
    keyword_progress: int = 0  # characters of a multi-character keyword written in a row so far
    fillers: int = 0  # filler characters (不 無) written so far
    keyword_uses: dict[int, int] = field(default_factory=dict)  # planned keyword id → times written


class ClassicalVerseProcessor:
    """Constrains a char-level model to one regulated-verse form; see the module docstring."""

    def __init__(self, tokenizer, n_lines: int, n_chars: int, *, pattern: str | None = None,
                 heads: str = "", rhyme_groups: Sequence[str] | None = None, prefix: str = "",
                 stop_after_line: int | None = None, tones: bool = True, rhyme: bool = True,
                 line_keywords: Sequence[str | None] = (), keyword_bias: float = KEYWORD_BIAS,
                 filler_penalty: float = FILLER_PENALTY):
        self.vocab = chinese_vocab(tokenizer)
        # One planned keyword per line (None: free) as token ids: a character, or a short word (長城) written
        # whole; a keyword the model cannot write, or too long for the line, is dropped.
        self.line_keywords: list[tuple[int, ...] | None] = []
        for word in line_keywords:
            ids = tuple(self.vocab.char_ids.get(ch, -1) for ch in word or "")
            ok = ids and len(ids) < n_chars and all(i >= 0 and chinese.tones(ch) for i, ch in zip(ids, word))
            self.line_keywords.append(ids if ok else None)
        self.keyword_ids = {i for k in self.line_keywords if k for i in k}
        self.keyword_bias = keyword_bias
        self.filler_penalty = filler_penalty
        self.filler_ids = [self.vocab.char_ids[ch] for ch in FILLER_CHARS if ch in self.vocab.char_ids]
        self.n_lines, self.n_chars = n_lines, n_chars
        self.heads = heads
        self.stop_after_line = stop_after_line  # 0-based; regenerating one line stops after it
        self.use_tones, self.use_rhyme = tones, rhyme
        if n_lines in (4, 8) and tones:
            self._all_patterns = list(chinese.standard_patterns(n_lines, n_chars))
            if pattern:
                self._all_patterns = [chinese.find_pattern(pattern, n_lines, n_chars)]
        else:
            self._all_patterns = []
        self._fixed_rhyme = frozenset(rhyme_groups) if rhyme_groups else None
        self.key = set(chinese.key_positions(n_chars))
        self.prefix = prefix
        self.tracker = RowStates(self._new_state, lambda state, tid: self._advance(state, tid, self._piece(tid)))
        self.relaxed = 0  # positions where the constraints had to be relaxed (for diagnostics)

    # -- state ----------------------------------------------------------------------------------
    def _new_state(self) -> _RowState:
        state = _RowState(patterns=list(self._all_patterns), rhyme=self._fixed_rhyme)
        for ch in self.prefix:
            self._advance(state, self.vocab.char_ids.get(ch, -1), ch)
        return state

    def _rhymes_here(self, state: _RowState) -> bool | None:
        """Whether the current line rhymes: True, False, or None while the patterns still disagree."""
        if state.line % 2 == 1:
            return True
        if state.line != 0:
            return False
        if not state.patterns:
            return False
        verdicts = {p.rhymes(0) for p in state.patterns}
        return verdicts.pop() if len(verdicts) == 1 else None

    def _punct_after_line(self, line: int) -> list[int]:
        v = self.vocab
        last = line + 1 >= self.n_lines or (self.stop_after_line is not None and line >= self.stop_after_line)
        if line % 2 == 0 and not last:
            seq = [v.comma_id]
        else:
            seq = [v.stop_id] + ([] if last else [v.newline_id])
        return [t for t in seq if t is not None]

    def _advance(self, state: _RowState, token_id: int, piece: str) -> None:
        if state.done:
            return
        if state.punct:
            state.punct.pop(0)
            if not state.punct:
                self._next_line(state)
            return
        if piece in _PUNCT_PIECES:  # only reachable when constraints were relaxed; do not count it
            return
        keyword = self._line_keyword(state)
        if keyword and not state.keyword_placed:
            if token_id == keyword[state.keyword_progress]:
                state.keyword_progress += 1
            else:  # broken off: this character may still begin it
                state.keyword_progress = int(token_id == keyword[0])
            state.keyword_placed = state.keyword_progress == len(keyword)
        if token_id in self.keyword_ids:
            state.keyword_uses[token_id] = state.keyword_uses.get(token_id, 0) + 1
        state.fillers += token_id in self.filler_ids
        pos = state.pos
        if pos in self.key and state.patterns:
            tone_set = chinese.tones(piece)
            keep = [p for p in state.patterns if p.lines[state.line][pos] in tone_set]
            state.patterns = keep or state.patterns
        if pos == self.n_chars - 1 and self.use_rhyme and self._rhymes_here(state) is not False:
            groups = chinese.rhyme_groups(piece, chinese.PING)
            if groups and (state.line % 2 == 1 or chinese.PING in chinese.tones(piece)):
                narrowed = groups if state.rhyme is None else (state.rhyme & groups)
                state.rhyme = narrowed or state.rhyme
                state.used_rhymes.add(token_id)
        state.pos += 1
        if state.pos >= self.n_chars:
            state.punct = self._punct_after_line(state.line)
            if not state.punct:
                self._next_line(state)

    def _next_line(self, state: _RowState) -> None:
        state.line += 1
        state.pos = 0
        state.keyword_placed, state.keyword_progress = False, 0
        if state.line >= self.n_lines or (self.stop_after_line is not None and state.line > self.stop_after_line):
            state.done = True

    def _line_keyword(self, state: _RowState) -> tuple[int, ...] | None:
        keywords = self.line_keywords
        return keywords[state.line] if state.line < len(keywords) else None

    def _keyword_fits(self, state: _RowState, start: int, keyword: tuple[int, ...]) -> bool:
        """Whether the keyword may stand from ``start`` in the current line: before the line's last
        character (rhyme and the line-end tone stay free), not on a 藏头诗 head, and with tones that one
        of the patterns still possible allows at every key position it covers."""
        end = start + len(keyword)
        if end > self.n_chars - 1 or (start == 0 and self.heads and state.line < len(self.heads)):
            return False
        if not state.patterns:
            return True
        tones = [chinese.tones(self.vocab.pieces[t]) for t in keyword]
        return any(all(pos not in self.key or p.lines[state.line][pos] in tone_set
                       for pos, tone_set in zip(range(start, end), tones)) for p in state.patterns)

    def _keyword_due(self, state: _RowState) -> int | None:
        """The keyword's next character when it must be written now: the rest of a keyword already begun,
        or its start at the last place it still fits the line."""
        keyword = self._line_keyword(state)
        if keyword is None or state.keyword_placed:
            return None
        if state.keyword_progress:
            begun = state.pos - state.keyword_progress
            return keyword[state.keyword_progress] if self._keyword_fits(state, begun, keyword) else None
        if not self._keyword_fits(state, state.pos, keyword):
            return None
        later = any(self._keyword_fits(state, p, keyword) for p in range(state.pos + 1, self.n_chars))
        return None if later else keyword[0]

    def _piece(self, token_id: int) -> str:
        pieces = self.vocab.pieces
        return pieces[token_id] if 0 <= token_id < len(pieces) else ""

    # -- masks ----------------------------------------------------------------------------------
    def _onehot(self, token_id: int):
        return one_hot(self.vocab.content, token_id)

    def _masks(self, state: _RowState) -> list:
        """Allowed-token masks from strictest to loosest; the first that leaves a token wins."""
        v = self.vocab
        if state.done:
            return [self._onehot(v.eos_id)] if v.eos_id is not None else []
        if state.punct:
            return [self._onehot(state.punct[0])]
        pos = state.pos
        if pos == 0 and self.heads and state.line < len(self.heads):
            head_id = v.char_ids.get(self.heads[state.line])
            if head_id is not None:
                return [self._onehot(head_id)]
        base = v.content
        tone_mask = None
        if pos in self.key and state.patterns:
            wanted = {p.lines[state.line][pos] for p in state.patterns}
            if len(wanted) == 1:
                tone_mask = v.ping if wanted.pop() == chinese.PING else v.ze
        strict = base if tone_mask is None else base & tone_mask
        masks = []
        due = self._keyword_due(state)
        if due is not None:
            masks.append(self._onehot(due) & strict)
        if pos == self.n_chars - 1 and self.use_rhyme and self._rhymes_here(state):
            # The first rhyming line may take any character of a 平 group; later ones that group's.
            rhyme = strict & (v.rhyme_mask(state.rhyme) if state.rhyme else v.rhymable)
            if state.used_rhymes:
                fresh = rhyme.clone()
                fresh[list(state.used_rhymes)] = False
                masks.append(fresh)
            masks.append(rhyme)
        masks += [strict, base]
        return masks

    def __call__(self, generated, logits):
        import torch

        finite = torch.isfinite(logits)
        for row, state in enumerate(self.tracker.sync(generated)):
            for mask in self._masks(state):
                if restrict(logits, row, mask, finite):
                    break
                self.relaxed += 1
            # No mask fitted: leave the row's logits as they are (the unconstrained set).
            self._steer(row, state, logits)
        return logits

    def _steer(self, row: int, state: _RowState, logits) -> None:
        """Soft preferences on the allowed tokens: the line's keyword up, filler (不 無) down — and out
        after one use, while anything else remains allowed."""
        if state.done or state.punct:
            return
        keyword = self._line_keyword(state)
        if keyword is not None and not state.keyword_placed and not state.keyword_progress:
            logits[row, keyword[0]] += self.keyword_bias
        # A theme character twice is emphasis; four times (花 in every line) is a stutter.
        spent = [k for k, n in state.keyword_uses.items() if n >= MAX_KEYWORD_USES and k not in (keyword or ())]
        if spent:
            forbid(logits, row, spent)
        if self.filler_ids:
            if not state.fillers:
                logits[row, self.filler_ids] -= self.filler_penalty
                return
            forbid(logits, row, self.filler_ids)


# --------------------------------------------------------------------------------------------------
# Syllables per line, for char-level English models


_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'’")


@dataclass
class EnglishVocab:
    letters: list[tuple[int, str]]  # (token id, letter) for the single-letter tokens
    letter_mask: Any  # [V]
    newline: Any  # [V] the line-break token
    end_punct: Any  # [V] single-character marks that end a word without a space (, . ; ! ?); no dash:
    # "snow-" before a line end or a placed word is a stub
    space: Any  # [V]
    eos_id: int
    verse_marks: Any  # [V] single characters other than letters and the colon, and <eos>: no byte or control tokens

    def letters_fitting(self, lexicon: Lexicon, partial: str, budget: int | None = None):
        """[V] the letters that may follow ``partial`` towards a dictionary word within ``budget`` syllables."""
        import torch

        mask = torch.zeros_like(self.letter_mask)
        ok = [i for i, letter in self.letters if lexicon.letter_fits(partial, letter, budget)]
        if ok:
            mask[torch.tensor(ok)] = True
        return mask


@per_tokenizer
def english_vocab(tokenizer) -> EnglishVocab:
    import torch

    pieces = token_pieces(tokenizer)
    letter_mask = torch.tensor([p in _LETTERS for p in pieces], dtype=torch.bool)
    return EnglishVocab(
        letters=[(i, p) for i, p in enumerate(pieces) if p in _LETTERS],
        letter_mask=letter_mask,
        newline=torch.tensor([p == "\n" for p in pieces], dtype=torch.bool),
        end_punct=torch.tensor([p in ",.;!?" for p in pieces], dtype=torch.bool),
        space=torch.tensor([p == " " for p in pieces], dtype=torch.bool),
        eos_id=int(tokenizer.eos_id),
        verse_marks=torch.tensor([(len(p) == 1 and p not in _LETTERS and p != SPEAKER_CUE_MARK) or i == tokenizer.eos_id
                                  for i, p in enumerate(pieces)], dtype=torch.bool),
    )


SPEAKER_CUE_MARK = ":"  # "HASTINGS:" in the training text; verse never needs a colon


@dataclass(frozen=True)
class Lexicon:
    """English words (lower case) and their syllables, with the fewest syllables of any word that
    begins with a given prefix: what lets a decoder spell only real words and plan a line's count."""

    syllables: dict[str, int]
    fewest: dict[str, int]  # every prefix of a word (the word included) -> fewest syllables

    def letter_fits(self, partial: str, letter: str, budget: int | None = None) -> bool:
        """May ``letter`` follow ``partial`` (both as typed) and still lead to a word within ``budget``?"""
        if letter.isupper() and partial:  # capitals only at a word's start: no ALL-CAPS speaker cues
            return False
        fewest = self.fewest.get((partial + letter).lower().replace("’", "'"))
        return fewest is not None and (budget is None or fewest <= budget)

    def word_syllables(self, partial: str) -> int | None:
        """Syllables of ``partial`` if it is a whole word, else None."""
        return self.syllables.get(partial.lower().replace("’", "'"))


_WORD_SHAPE = re.compile(r"[a-z]+(?:'[a-z]+)*")


# wordfreq's common words include other languages' syllables (ha, ma, su, yo, de): of two-letter words only
# these English ones are kept, so a line never closes on a fragment like "the sta".
TWO_LETTER_WORDS = frozenset("ah am an as at be by do eh go he hi ho if in is it lo me my no of oh ok on or "
                             "ox so to up us we ye".split())
COMMON_WORDS = 50_000
VERY_COMMON_WORDS = 8_000  # wordfreq's most frequent English words that the lexicon draws on
POETIC_ELISIONS = frozenset(("o'er", "ne'er", "e'er", "'tis", "'twas"))


def _known_english_word() -> Callable[[str], bool]:
    """A test that drops the clipped words and foreign syllables among wordfreq's common words (comm,
    prost, mong): a word is kept when WordNet knows it (inflections too), when it is very common
    (among wordfreq's VERY_COMMON_WORDS: the function words WordNet leaves out), or when it is archaic verse
    (thee, hath, ere). Without WordNet's files every word is kept."""
    from wordfreq import top_n_list

    from synesthesia import wordnet
    from synesthesia.keywords import ARCHAIC_STOP_WORDS

    if not wordnet.available():
        return lambda word: True
    parts = ("noun", "verb", "adj", "adv")
    frequent = set(top_n_list("en", VERY_COMMON_WORDS))

    def known(word: str) -> bool:
        base = word.split("'")[0]
        return (word in frequent or base in ARCHAIC_STOP_WORDS or word in POETIC_ELISIONS
                or any(wordnet.base_forms(base, pos) for pos in parts))

    return known


@functools.lru_cache(maxsize=1)
def english_lexicon() -> Lexicon:
    """Common English words with a CMU pronunciation: the CMU Pronouncing Dictionary (via ``pronouncing``)
    holds ~126k entries, many of them surnames and abbreviations (``hastert``, ``th``), so only those
    among wordfreq's COMMON_WORDS most frequent words are kept (plus contractions of them and a few
    poetic elisions); of single letters only ``a``, ``i`` and ``o``, of two letters only ``TWO_LETTER_WORDS``;
    and only words ``_known_english_word`` accepts."""
    import pronouncing
    from wordfreq import top_n_list

    pronouncing.init_cmu()
    common = set(top_n_list("en", COMMON_WORDS))
    known = _known_english_word()
    syllables: dict[str, int] = {}
    fewest: dict[str, int] = {}
    for word, phones in pronouncing.lookup.items():
        if not phones or not _WORD_SHAPE.fullmatch(word.lstrip("'")) or not re.search(r"[aeiouy]", word):
            continue
        if len(word) == 1 and word not in "aio" or len(word) == 2 and word not in TWO_LETTER_WORDS:
            continue
        if word not in common and word.split("'")[0] not in common and word not in POETIC_ELISIONS:
            continue
        if not known(word):
            continue
        count = sum(ch.isdigit() for ch in phones[0])
        syllables[word] = count
        for end in range(1, len(word) + 1):
            prefix = word[:end]
            if fewest.get(prefix, 99) > count:
                fewest[prefix] = count
    return Lexicon(syllables, fewest)


@dataclass
class _WordsRow:
    partial: str = ""  # the word being written
    line_open: bool = False  # the current line has text


class EnglishWordsProcessor:
    """Only dictionary words, capitals only at a word's start and no colon, for char-level English
    models: a drama-trained model then writes verse, not ``HASTINGS:I hope, t;``. Without
    ``blank_lines`` a line break needs text before it, so a stanza-less form stays one speech instead of
    running on into the next speaker's cue."""

    def __init__(self, tokenizer, blank_lines: bool = True):
        self.vocab = english_vocab(tokenizer)
        self.lexicon = english_lexicon()
        self.blank_lines = blank_lines
        self.pieces = token_pieces(tokenizer)
        self.tracker = RowStates(_WordsRow, lambda row, tid: self._advance(row, self.pieces[tid]))

    @staticmethod
    def _advance(row: _WordsRow, piece: str) -> None:
        row.partial = row.partial + piece if piece in _LETTERS else ""
        row.line_open = piece != "\n" and (row.line_open or bool(piece.strip()))

    def __call__(self, generated, logits):
        import torch

        finite = torch.isfinite(logits)
        v = self.vocab
        for index, row in enumerate(self.tracker.sync(generated)):
            partial = row.partial
            letters = v.letters_fitting(self.lexicon, partial)
            if partial and self.lexicon.word_syllables(partial) is None:
                allowed = letters  # inside a word that is not finished yet
            else:
                allowed = v.verse_marks | letters
                if not self.blank_lines and not row.line_open:
                    allowed = allowed & ~v.newline
            restrict(logits, index, allowed, finite)
        return logits


@dataclass
class _SyllableRow:
    line: int = 0
    done: int = 0  # syllables of the finished words of the current line
    partial: str = ""  # the word being written
    has_text: bool = False
    last: str = ""
    queue: str = ""  # characters the form writes next (a planned keyword or the line's rhyme word)
    keyword_placed: bool = False
    closing: bool = False  # the line's rhyme word is written: only punctuation or the line break follow
    plan: int = -1  # which of the processor's plans this row follows (its row index)


@dataclass(frozen=True)
class LinePlan:
    """What one line must do: exactly ``syllables``; end on ``end_word`` (a rhyme) and hold ``keyword``
    (a theme word) when given."""

    syllables: int
    end_word: str | None = None
    keyword: str | None = None
    keyword_after: int | None = None  # syllables of free words before the keyword (None: just before the rhyme)


def word_syllables(word: str) -> int:
    from synesthesia_poetry import english

    return english.syllables(word)


class SyllableLineProcessor:
    """Lines of exactly the given syllable counts (e.g. 5-7-5), for char-level tokenizers; optionally
    each line ending on a planned rhyme word and holding a planned theme keyword (Hafez-style
    rhyme-constrained decoding, with lexical constraints).

    Words are dictionary words (``english_lexicon``, whose counts are the CMU counts the validators use):
    a letter is allowed only if some word starting so still fits the line's remaining syllables, a word
    ends only where it is whole; the line break only when the count is met, and then it is the only
    choice (after at most one punctuation mark). No capitals inside words, no colon (see
    ``EnglishWordsProcessor``) and no dashes (a dash before a placed word reads "the dead- wick").

    ``plans`` gives per-line ``LinePlan``s, one list per candidate row (row ``r`` uses
    ``plans[r % len(plans)]``, so a batch of candidates tries different rhyme words). The syllables of a
    line's keyword and end word are held back from the free words; when only they are left, the form
    spells them (the keyword first, unless the model already wrote it), then the line ends.
    """

    def __init__(self, tokenizer, syllables: tuple[int, ...] = (), plans: Sequence[Sequence[LinePlan]] = ()):
        self.plans = [list(p) for p in plans] or [[LinePlan(n) for n in syllables]]
        self.targets = tuple(p.syllables for p in self.plans[0])
        self.vocab = english_vocab(tokenizer)
        self.lexicon = english_lexicon()
        self.pieces = token_pieces(tokenizer)
        self.char_ids = {p: i for i, p in enumerate(self.pieces) if len(p) == 1}
        self.tracker = RowStates(_SyllableRow, lambda row, tid: self._advance(row, self.pieces[tid]))

    def _plan(self, row: _SyllableRow) -> LinePlan | None:
        plan = self.plans[max(row.plan, 0) % len(self.plans)]
        return plan[row.line] if row.line < len(plan) else None

    @staticmethod
    def _keyword_pending(row: _SyllableRow, plan: LinePlan) -> bool:
        return bool(plan.keyword) and not row.keyword_placed and row.partial.lower() != plan.keyword

    def _reserve(self, row: _SyllableRow, plan: LinePlan) -> int:
        """Syllables held back for the words the form places: the rhyme word, and the keyword until written."""
        reserve = word_syllables(plan.end_word) if plan.end_word else 0
        if self._keyword_pending(row, plan):
            if plan.keyword_after is not None:  # the keyword is due once that many free syllables are written
                return plan.syllables - plan.keyword_after
            reserve += word_syllables(plan.keyword)
        return reserve

    def _advance(self, row: _SyllableRow, piece: str) -> None:
        if row.line >= len(self.targets):
            return
        if row.queue and piece == row.queue[0]:
            row.queue = row.queue[1:]
        if piece == "\n":
            if row.has_text:
                row.line += 1
                row.done, row.partial, row.has_text = 0, "", False
                row.keyword_placed, row.closing, row.queue = False, False, ""
        elif piece in _LETTERS:
            row.partial += piece
            row.has_text = True
        else:
            if row.partial:
                self._word_done(row)
            row.has_text = row.has_text or bool(piece.strip())
        row.last = piece

    def _word_done(self, row: _SyllableRow) -> None:
        word = row.partial.lower().replace("’", "'")
        plan = self._plan(row)
        row.done += self.lexicon.word_syllables(word) or (word_syllables(word) if plan else 0)
        if plan and plan.keyword and not row.keyword_placed and word in (plan.keyword, plan.keyword + "s"):
            row.keyword_placed = True
        row.partial = ""

    def _force(self, row: _SyllableRow, word: str):
        """Queue ``word`` (after a space where one is needed) and return the mask of its first character."""
        sep = " " if row.has_text and row.last not in (" ", "") and not row.partial else ""
        if row.partial:  # close the finished word first
            sep = " "
        row.queue = sep + word
        return self._queue_mask(row)

    def _queue_mask(self, row: _SyllableRow):
        import torch

        token = self.char_ids.get(row.queue[0])
        return one_hot(self.vocab.newline, token) if token is not None else torch.zeros_like(self.vocab.newline)

    def _allowed(self, row: _SyllableRow):
        v = self.vocab
        eos = one_hot(v.newline, v.eos_id)
        plan = self._plan(row)
        if plan is None:
            return eos
        if row.queue:
            return self._queue_mask(row)
        last_line = row.line == len(self.targets) - 1
        line_end = eos | v.newline if last_line else v.newline
        if row.closing:
            return line_end | v.end_punct if row.partial else line_end
        target = plan.syllables
        if plan.keyword and not row.keyword_placed and row.partial.lower() == plan.keyword:
            return v.space | v.end_punct  # the keyword is written: close it as it is ("lamp", not "lamplight")
        reserve = self._reserve(row, plan)
        if not row.partial and reserve and row.done + reserve > target:
            # Over budget (a word the lexicon counts otherwise): keep the rhyme, drop the keyword.
            row.keyword_placed = True
            reserve = self._reserve(row, plan)
        letters = v.letters_fitting(self.lexicon, row.partial, target - reserve - row.done)
        word = self.lexicon.word_syllables(row.partial) if row.partial else 0
        if word is None and row.partial.lower() in (plan.keyword, plan.end_word):
            word = word_syllables(row.partial)  # a placed word the common-word lexicon lacks
        if word is None or row.done + word + reserve > target:
            return letters  # only a longer word can close here
        if row.done + word + reserve == target and (row.has_text or reserve):
            if reserve and (row.partial or row.last in (" ", "", "\n") or row.last in ",.;!?"):
                if row.partial:  # the free words are done: close this one (or let it grow by letters that
                    return v.space | v.end_punct | letters  # add no syllable), then the form writes the rest
                if self._keyword_pending(row, plan):
                    return self._force(row, plan.keyword)
                row.closing = True
                return self._force(row, plan.end_word)
            if reserve:
                return v.space
            # The count is met: end the line; a word in progress may still grow by letters that add no
            # syllable, and be closed by one punctuation mark.
            if not row.partial:
                return line_end
            return line_end | v.end_punct | letters
        return v.space | v.end_punct | letters

    def __call__(self, generated, logits):
        import torch

        finite = torch.isfinite(logits)
        rows = self.tracker.sync(generated)
        for index, row in enumerate(rows):
            if row.plan < 0:
                row.plan = index
            restrict(logits, index, self._allowed(row), finite)
        return logits
