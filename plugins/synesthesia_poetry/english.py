"""English prosody: syllables, stress, end rhyme.

Pronunciations come from the CMU Pronouncing Dictionary (via ``pronouncing``). Words it lacks (names,
coinages, archaic spellings) get a syllable count from vowel groups and a rhyme key from their spelling.
"""

from __future__ import annotations

import functools
import re

WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def words(line: str) -> list[str]:
    return [w.replace("’", "'").lower() for w in WORD.findall(line)]


@functools.lru_cache(maxsize=65536)
def _phones(word: str) -> tuple[str, ...]:
    import pronouncing

    found = pronouncing.phones_for_word(word)
    if not found and word.endswith("'s"):
        found = pronouncing.phones_for_word(word[:-2])
    if not found and word.endswith("'d"):  # Shakespearean "lov'd"
        found = pronouncing.phones_for_word(word[:-2] + "ed")
    return tuple(found)


def rule_syllables(word: str) -> int:
    """Syllables by spelling, for words the dictionary lacks: vowel groups, minus a silent final e."""
    w = word.lower().replace("'", "")
    count = len(VOWEL_GROUPS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    if w.endswith("ed") and not w.endswith(("ted", "ded")) and count > 1:
        count -= 1
    return max(1, count)


def syllables(word: str) -> int:
    phones = _phones(word.lower())
    if phones:
        return sum(ch.isdigit() for ch in phones[0])
    return rule_syllables(word)


def line_syllables(line: str) -> int:
    return sum(syllables(w) for w in words(line))


def stresses(word: str) -> str | None:
    """Stress digits per syllable (``1`` primary, ``2`` secondary, ``0`` none), or None when unknown."""
    phones = _phones(word.lower())
    if not phones:
        return None
    return "".join(ch for ch in phones[0] if ch.isdigit())


def iambic_score(line: str) -> float:
    """How well a line fits iambic pentameter: 10 (or 11, feminine ending) syllables, stress on even beats.

    Monosyllables may take either stress, so only the syllables of longer words are checked.
    """
    ws = words(line)
    if not ws:
        return 0.0
    position = hits = checked = 0
    for w in ws:
        pattern = stresses(w)
        n = len(pattern) if pattern else rule_syllables(w)
        if pattern and n > 1:
            for i, digit in enumerate(pattern):
                expected_stressed = (position + i) % 2 == 1
                checked += 1
                hits += (digit in "12") == expected_stressed
        position += n
    meter = hits / checked if checked else 1.0
    length = 1.0 if position in (10, 11) else max(0.0, 1.0 - abs(position - 10) / 5)
    return 0.5 * meter + 0.5 * length


def rhyme_key(word: str) -> str:
    """What must match for two words to rhyme: the CMU rhyming part, else the last vowel group onward."""
    import pronouncing

    phones = _phones(word.lower())
    if phones:
        return "cmu:" + pronouncing.rhyming_part(phones[0])
    w = word.lower().replace("'", "")
    match = re.search(r"[aeiouy]+[^aeiouy]*$", w)
    return "spell:" + (match.group(0) if match else w)


def rhymes(a: str, b: str, allow_identical: bool = False) -> bool:
    """Whether two words rhyme; a repeated word counts only with ``allow_identical`` (Lear's "beard"/"beard")."""
    a, b = a.lower(), b.lower()
    if not a or not b:
        return False
    if a == b:
        return allow_identical
    ka, kb = rhyme_key(a), rhyme_key(b)
    if ka == kb:
        return True
    # One word unknown to the dictionary: compare spellings of the endings.
    if ka.startswith("spell:") or kb.startswith("spell:"):
        return a[-3:] == b[-3:] or (len(a) > 1 and len(b) > 1 and a[-2:] == b[-2:] and a[-2] in "aeiouy")
    return False


def last_word(line: str) -> str:
    ws = words(line)
    return ws[-1] if ws else ""


def scheme_accuracy(lines: list[str], scheme: str, allow_identical: bool = False) -> float:
    """Share of line pairs the scheme says rhyme (same letter) that do rhyme, e.g. scheme "AABBA"."""
    ends = [last_word(line) for line in lines]
    pairs = [(i, j) for i in range(len(scheme)) for j in range(i + 1, len(scheme))
             if scheme[i] == scheme[j] and scheme[i] != " "]
    if not pairs or len(ends) < len(scheme):
        return 0.0
    # A letter's lines rhyme when each one rhymes with the first of its group.
    firsts = {}
    checks = []
    for i, letter in enumerate(scheme):
        if letter == " ":
            continue
        if letter in firsts:
            checks.append(rhymes(ends[firsts[letter]], ends[i], allow_identical))
        else:
            firsts[letter] = i
    return sum(checks) / len(checks) if checks else 0.0


# --------------------------------------------------------------------------------------------------
# Rhyme words for a scheme (Hafez-style planning)

RHYME_MIN_ZIPF = 3.3  # end words are common words (wordfreq Zipf frequency)


@functools.lru_cache(maxsize=1)
def rhyme_classes() -> dict[str, tuple[str, ...]]:
    """CMU rhyming part → common one- and two-syllable dictionary words sharing it, most frequent first.
    Two words of a class rhyme by ``rhymes`` (the validators' test)."""
    from wordfreq import zipf_frequency

    from synesthesia import wordnet
    from synesthesia_poetry.constraints import english_lexicon

    # Names rhyme too (singh, nora, haitian): an end word must also be a common WordNet word.
    known = wordnet.is_common_word if wordnet.available() else (lambda w: True)
    classes: dict[str, list[tuple[float, str]]] = {}
    for word, count in english_lexicon().syllables.items():
        if count > 2 or "'" in word or len(word) < 3 or not known(word):
            continue
        freq = zipf_frequency(word, "en")
        if freq < RHYME_MIN_ZIPF:
            continue
        classes.setdefault(rhyme_key(word), []).append((freq, word))
    return {key: tuple(w for _, w in sorted(words, reverse=True)) for key, words in classes.items()
            if len(words) >= 3}


def rhyme_partners(word: str) -> tuple[str, ...]:
    """Common words that rhyme with ``word`` (not the word itself)."""
    return tuple(w for w in rhyme_classes().get(rhyme_key(word), ()) if w != word.lower())


def plan_rhymes(scheme: str, preferred: list[str], variant: int = 0) -> dict[str, list[str]]:
    """End words for each letter of ``scheme`` (e.g. "ABAB CDCD EFEF GG"): a letter's first word is a
    ``preferred`` (theme) word where one has enough rhymes, else a common word; the rest rhyme with it.
    ``variant`` rotates the preferred words and the choice of partners, so candidates differ."""
    import random

    letters = [ch for ch in scheme if ch != " "]
    needed = {ch: letters.count(ch) for ch in dict.fromkeys(letters)}
    rng = random.Random(f"{scheme}|{'|'.join(preferred)}|{variant}")
    seeds = [w for w in preferred if len(rhyme_partners(w)) >= 2]
    if seeds:
        shift = variant % len(seeds)
        seeds = seeds[shift:] + seeds[:shift]
    pools = sorted(rhyme_classes().values(), key=len, reverse=True)[:60]
    used: set[str] = set()
    plan: dict[str, list[str]] = {}
    for letter, count in needed.items():
        seed = next((w for w in seeds if w not in used), None)
        if seed is not None:
            partners = [w for w in rhyme_partners(seed) if w not in used][:12]
            if len(partners) >= count - 1:
                chosen = [seed] + rng.sample(partners, count - 1)
                used.update(chosen)
                plan[letter] = chosen
                seeds.remove(seed)
                continue
        while True:
            pool = [w for w in rng.choice(pools) if w not in used][:16]
            if len(pool) >= count:
                chosen = rng.sample(pool, count)
                used.update(chosen)
                plan[letter] = chosen
                break
    return plan
