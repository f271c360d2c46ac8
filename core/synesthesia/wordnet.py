"""Related English words from WordNet 3.0's database files (Debian's ``wordnet-base``), read directly.

The files are the documented ``wndb(5WN)`` format: ``index.<pos>`` lists each lemma with the byte offsets of
its synsets in ``data.<pos>``; a data line holds the synset's words, then pointers (``@`` hypernym, ``~``
hyponym, ``%p``/``#p`` part meronym/holonym, ``+`` derivationally related, ``&`` similar, ``=`` attribute)
as ``symbol offset pos source/target``. ``<pos>.exc`` lists irregular forms (geese → goose).

Nothing is downloaded: without the files (``SYNESTHESIA_WORDNET`` names another folder) every lookup is
empty and ``available()`` says so, so callers can name it once instead of failing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

DEFAULT_DIR = "/usr/share/wordnet"
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
# Pointers worth following for imagery, most concrete first: parts and wholes, kinds of it (hyponyms),
# similar adjectives, derivations, then what it is a kind of (hypernyms are often abstract: rain →
# precipitation). Attributes (broken → integrity) are left out.
RELATIONS = ("%p", "#p", "%m", "#m", "~", "&", "+", "@", "@i")


def wordnet_dir() -> Path:
    return Path(os.environ.get("SYNESTHESIA_WORDNET") or DEFAULT_DIR)


def available() -> bool:
    return (wordnet_dir() / "index.noun").is_file()


@functools.cache
def _index(pos: str) -> dict[str, tuple[int, ...]]:
    """lemma → synset offsets (most frequent sense first) for one part of speech."""
    path = wordnet_dir() / f"index.{pos}"
    table: dict[str, tuple[int, ...]] = {}
    if not path.is_file():
        return table
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" "):
                continue  # the licence header
            fields = line.split()
            # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...
            synset_cnt, p_cnt = int(fields[2]), int(fields[3])
            offsets = fields[6 + p_cnt: 6 + p_cnt + synset_cnt]
            table[fields[0]] = tuple(int(o) for o in offsets)
    return table


@functools.cache
def _exceptions(pos: str) -> dict[str, str]:
    path = wordnet_dir() / f"{pos}.exc"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        return {f[0]: f[1] for f in (line.split() for line in handle) if len(f) >= 2}


@functools.lru_cache(maxsize=4096)
def _synset(pos: str, offset: int) -> tuple[tuple[str, ...], tuple[tuple[str, int, str], ...]]:
    """(words as written, pointers) of the synset at ``offset`` in ``data.<pos>``; pointers are
    (symbol, offset, pos). Words keep their case: ``Haitian`` is a name, ``haven`` is not."""
    with open(wordnet_dir() / f"data.{pos}", "rb") as handle:
        handle.seek(offset)
        line = handle.readline().decode("utf-8", errors="replace")
    fields = line.split(" | ")[0].split()
    # offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr...
    w_cnt = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].split("(")[0] for i in range(w_cnt))
    at = 4 + 2 * w_cnt
    p_cnt = int(fields[at])
    pointers = tuple((fields[at + 1 + 4 * i], int(fields[at + 2 + 4 * i]), POS_FILES[fields[at + 3 + 4 * i]])
                     for i in range(p_cnt))
    return words, pointers


def base_forms(word: str, pos: str = "noun") -> list[str]:
    """The lemma(s) WordNet files ``word`` under: itself, an irregular form's base, or a regular stem."""
    word = word.lower().replace(" ", "_")
    index = _index(pos)
    found = [word] if word in index else []
    exc = _exceptions(pos).get(word)
    if exc and exc in index:
        found.append(exc)
    suffixes = {"noun": (("ies", "y"), ("es", ""), ("s", "")),
                "verb": (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e")),
                "adj": (("er", ""), ("est", ""))}.get(pos, ())
    for suffix, repl in suffixes:
        if word.endswith(suffix) and word[: -len(suffix)] + repl in index:
            found.append(word[: -len(suffix)] + repl)
    return list(dict.fromkeys(found))


def related_words(word: str, *, senses: int = 1, limit: int = 24) -> list[str]:
    """Words related to ``word``: synonyms of its first ``senses`` senses in the first part of speech that
    has it (noun, adjective, verb: "snow" is the weather, not "to snow someone"), then the words of related
    synsets in ``RELATIONS`` order.
    Single words only (no multi-word collocations), in a stable order, without ``word`` itself."""
    if not available():
        return []
    out: list[str] = []
    own = {word.lower()}

    def add(words) -> None:
        for w in (w.lower() for w in words):
            if "_" not in w and "-" not in w and w.isalpha() and w not in own and w not in out:
                out.append(w)

    neighbours: list[tuple[int, str, int]] = []  # (relation rank, pos, offset)
    for pos in ("noun", "adj", "verb"):
        for lemma in base_forms(word, pos):
            own.add(lemma)
            for offset in _index(pos)[lemma][:senses]:
                words, pointers = _synset(pos, offset)
                add(words)
                for symbol, target, target_pos in pointers:
                    if symbol in RELATIONS:
                        neighbours.append((RELATIONS.index(symbol), target_pos, target))
        if neighbours or out:
            break
    for _, pos, offset in sorted(neighbours, key=lambda n: n[0]):
        add(_synset(pos, offset)[0])
        if len(out) >= limit:
            break
    return out[:limit]


def is_common_word(word: str) -> bool:
    """Whether WordNet files ``word`` in lower case somewhere (a common word), not only capitalised as a
    name or a people (``Haitian``, ``Cole``); False for words it does not know."""
    word = word.lower()
    for pos in ("noun", "verb", "adj", "adv"):
        for offset in _index(pos).get(word, ()):
            if word in _synset(pos, offset)[0]:
                return True
    return False
