"""The mood of a theme: which curated mood words it holds, and the mode, tempo and register they ask for.

The lexicon is data (``data/moods.json``): a handful of moods (sorrow, longing, bleak, serene, joy, heroic),
each with Chinese characters or words and English words, a Chinese mode, an English mode, a tempo factor
and a register shift. The artist's theme decides: among the moods it names, the one named most (its words
count ``theme_weight`` each, the poem's one each, so the poem breaks ties). A theme that names no mood
leaves it to the poem's words; no mood word anywhere gives the neutral entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

MOODS_PATH = Path(__file__).parent / "data" / "moods.json"
_EN_WORD = re.compile(r"[a-z]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class MoodReading:
    """What was read, from which words, and what it asks of the melody."""

    mood: str  # a mood name, or "neutral"
    source: str  # "theme", "text" or "none"
    zh_mode: str
    en_mode: str
    tempo_factor: float
    register: int  # semitones
    theme: str = ""
    theme_words: dict[str, str] = field(default_factory=dict)  # word -> mood, in the order found
    text_words: dict[str, str] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)

    @property
    def valence(self) -> int:
        """+1 bright, -1 dark, 0 neither (what the older mood count meant)."""
        return -1 if self.en_mode == "minor" else (1 if self.mood != "neutral" else 0)

    def to_json(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def lexicon() -> dict:
    data = json.loads(MOODS_PATH.read_text(encoding="utf-8"))
    zh: dict[str, str] = {}
    en: dict[str, str] = {}
    for mood, entry in data["moods"].items():
        for word in entry["zh"]:
            zh.setdefault(word, mood)
        for word in entry["en"]:
            en.setdefault(word.lower(), mood)
    return {"moods": data["moods"], "neutral": data["neutral"], "zh": zh, "en": en,
            "zh_longest": max(map(len, zh)), "theme_weight": int(data["theme_weight"])}


def _english_forms(word: str) -> tuple[str, ...]:
    forms = [word]
    for suffix in ("s", "es", "ed", "d", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            forms.append(word[: -len(suffix)])
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    return tuple(forms)


def scan(text: str) -> list[tuple[str, str]]:
    """Every mood word in ``text`` as (word, mood), repeats included: Chinese longest match first, then
    English words."""
    lex = lexicon()
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        size = 0
        if _CJK.match(text[i]):
            size = next((n for n in range(min(lex["zh_longest"], len(text) - i), 0, -1)
                         if text[i : i + n] in lex["zh"]), 0)
        if size:
            found.append((text[i : i + size], lex["zh"][text[i : i + size]]))
        i += max(size, 1)
    for word in _EN_WORD.findall(text.lower()):
        mood = next((lex["en"][f] for f in _english_forms(word) if f in lex["en"]), None)
        if mood:
            found.append((word, mood))
    return found


def read_mood(theme: str, text: str = "") -> MoodReading:
    """The mood ``theme`` names; the poem's mood words only break a tie between the theme's moods, and
    decide alone when the theme names none. A tie left in the theme goes to the mood it names first; a
    tie among the poem's words alone gives neutral."""
    lex = lexicon()
    theme = theme or ""
    theme_hits, text_hits = scan(theme), scan(text or "")
    weight = lex["theme_weight"]
    scores: dict[str, int] = {}
    for hits, w in ((theme_hits, weight), (text_hits, 1)):
        for _word, mood in hits:
            scores[mood] = scores.get(mood, 0) + w
    theme_words, text_words = dict(theme_hits), dict(text_hits)
    hits = theme_hits or text_hits
    order = list(dict.fromkeys(mood for _word, mood in hits))
    best = max(order, key=lambda m: (scores[m], -order.index(m))) if order else ""
    if not theme_hits and sum(scores[m] == scores.get(best) for m in order) > 1:
        hits = []  # the poem's words pull several ways at once and there is no theme to settle it
    if not hits:
        entry = lex["neutral"]
        return MoodReading("neutral", "none", entry["zh_mode"], entry["en_mode"], float(entry["tempo"]),
                           int(entry["register"]), theme, theme_words, text_words, scores)
    entry = lex["moods"][best]
    return MoodReading(best, "theme" if theme_hits else "text", entry["zh_mode"], entry["en_mode"],
                       float(entry["tempo"]), int(entry["register"]), theme, theme_words, text_words, scores)
