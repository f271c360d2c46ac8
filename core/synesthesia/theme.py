"""Understanding an artist's theme: its own words, then related imagery, in the order a form places them.

``understand_theme("江雪", "zh")`` gives the theme's own characters (江 雪) and then the images poets set
beside them (寒 舟 釣 …, from a curated imagery glossary in the spirit of 诗学含英 / Jiuge's keyword
expansion, ``data/imagery_zh.json``). ``understand_theme("harbor at dawn", "en")`` gives the theme's
content words (harbor dawn) and then related words from WordNet (port haven morning sunrise …; Debian's
``wordnet-base``, read by ``synesthesia.wordnet``), kept to common English words. Across languages the
existing glossary (``keywords.GLOSSARY_EN_ZH``) carries English themes into Chinese and back.

Words are matched exactly, then by meaning (glossary, imagery, WordNet), never by spelling similarity.
What cannot be understood is listed in ``unknown`` (the pipeline names it on stderr and in the manifest).
Forms plan with ``keywords``: the theme's own words first, so a four-line poem on a two-character theme
places both characters before any related image. The result is deterministic: the same theme always
gives the same keywords.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synesthesia import keywords as kw

IMAGERY_ZH = Path(__file__).parent / "data" / "imagery_zh.json"
MIN_ZIPF = 3.0  # wordfreq's Zipf frequency a related English word needs (3 = once per million words)
MAX_KEYWORDS = 8
# Grammatical glue left out of a theme; anything else the artist typed is meant ("old violin", "first snow").
THEME_STOP_EN = frozenset(
    "a an the and or but nor of at in on to for from by with without into onto over under upon about as "
    "is are was were be been being am do does did has have had this that these those it its my your his her "
    "our their me him them us we you they i he she there here than then so very".split())
THEME_STOP_ZH = frozenset("之乎者也矣焉哉兮而以於于其所的了着著")


@dataclass
class ThemeUnderstanding:
    """What a theme was understood as; ``to_dict`` is what the manifest records under ``theme``."""

    text: str
    language: str
    words: list[str] = field(default_factory=list)  # the theme's own words (zh: characters), as placed
    phrases: list[str] = field(default_factory=list)  # zh: the theme's words of 2-3 characters, kept whole
    related: list[str] = field(default_factory=list)  # related imagery, strongest first
    unknown: list[str] = field(default_factory=list)  # theme words that could not be understood
    sources: dict[str, str] = field(default_factory=dict)  # keyword → "theme" | "glossary" | "imagery" | "wordnet"
    notes: list[str] = field(default_factory=list)

    @property
    def keywords(self) -> list[str]:
        """What a form places, in order: the theme's phrases whole (長城), its other words, then related."""
        in_phrases = set("".join(self.phrases))
        own = self.phrases + [w for w in self.words if w not in in_phrases]
        return (own + [w for w in self.related if w not in own])[:MAX_KEYWORDS]

    def to_dict(self) -> dict:
        return {**asdict(self), "keywords": self.keywords}


@functools.lru_cache(maxsize=1)
def imagery_zh() -> dict[str, list[str]]:
    data = json.loads(IMAGERY_ZH.read_text(encoding="utf-8"))
    return {k: list(v) for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=1)
def _gloss_zh_en() -> dict[str, str]:
    """Chinese character or word → the first English word the glossary gives it (秋 → autumn)."""
    out: dict[str, str] = {}
    for english, chinese in kw.GLOSSARY_EN_ZH.items():
        if "-" not in english:
            out.setdefault(chinese, english)
            out.setdefault(kw.to_simplified(chinese), english)
    return out


def _round_robin(lists: list[list[str]], exclude: set[str]) -> list[str]:
    out: list[str] = []
    for depth in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if depth < len(items) and items[depth] not in exclude and items[depth] not in out:
                out.append(items[depth])
    return out


def _common(word: str) -> bool:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") >= MIN_ZIPF


def english_related(word: str, limit: int = 8) -> list[str]:
    """Common English words related to ``word`` by meaning (WordNet), strongest first."""
    from synesthesia import wordnet

    return [w for w in wordnet.related_words(word, limit=4 * limit) if len(w) >= 3 and _common(w)][:limit]


def _gloss_en_zh(word: str) -> tuple[str | None, str]:
    """A Chinese gloss of an English word: the glossary directly, else through a related word."""
    for variant in kw._english_variants(word):
        if variant in kw.GLOSSARY_EN_ZH:
            return kw.GLOSSARY_EN_ZH[variant], "glossary"
    for related in english_related(word, limit=12):
        if related in kw.GLOSSARY_EN_ZH:
            return kw.GLOSSARY_EN_ZH[related], "wordnet"
    return None, ""


def _understand_zh(result: ThemeUnderstanding, script: str) -> None:
    convert = kw.to_simplified if script == "simplified" else kw.to_traditional
    own_words: list[str] = []  # whole theme words, for the imagery glossary
    for word in kw.split_theme(result.text):
        if kw.is_han(word):
            source = "theme"
            han = convert(word)
        else:
            glossed, source = _gloss_en_zh(word.lower())
            if glossed is None:
                result.unknown.append(word)
                continue
            han = convert(glossed)
            result.notes.append(f"{word} → {han}")
        own_words.append(han)
        content = "".join(ch for ch in han if ch not in THEME_STOP_ZH and kw.is_han(ch))
        if 2 <= len(content) <= 3 and content not in result.phrases:
            result.phrases.append(content)
        for ch in han:
            if ch not in THEME_STOP_ZH and kw.is_han(ch) and ch not in result.words:
                result.words.append(ch)
                result.sources[ch] = source
    table = imagery_zh()
    lists = [table.get(w, []) for w in own_words if len(w) > 1] + [table.get(ch, []) for ch in result.words]
    lists = [[convert(x) for x in items] for items in lists]
    result.related = _round_robin(lists, set(result.words))
    for ch in result.related:
        result.sources.setdefault(ch, "imagery")


def _understand_en(result: ThemeUnderstanding) -> None:
    for word in kw.split_theme(result.text):
        if kw.is_han(word):
            gloss = _gloss_zh_en()
            english = [gloss[word]] if word in gloss else [gloss[ch] for ch in word if ch in gloss]
            if not english:
                result.unknown.append(word)
                continue
            result.notes.append(f"{word} → {' '.join(english)}")
            word = " ".join(english)
        stripped = word.strip(".,;:!?\"'()“”‘’")
        if not re.fullmatch(r"[A-Za-z]+(?:['’-][A-Za-z]+)*(?: [A-Za-z]+)*", stripped):
            result.unknown.append(word)  # not a word: "${oc.env:HOME}", "x86", "#1"
            continue
        for part in re.findall(r"[A-Za-z]+(?:['’][A-Za-z]+)?", stripped):
            w = re.sub(r"['’]s$", "", part.lower())
            if w in THEME_STOP_EN or len(w) < 2 or "'" in w or "’" in w:
                continue
            if w not in result.words:
                result.words.append(w)
                result.sources[w] = "theme"
    lists = [english_related(w) for w in result.words]
    own = set(result.words)
    result.related = [w for w in _round_robin(lists, own) if not any(w.startswith(o) or o.startswith(w) for o in own)]
    for w in result.related:
        result.sources.setdefault(w, "wordnet")


def understand_theme(theme: str, language: str | None, *, script: str = "traditional") -> ThemeUnderstanding:
    """The theme's own words and related imagery for a form of ``language`` ('zh', 'en', or None: the
    theme's own language). ``script`` is the Chinese script the model writes (traditional for ``tang``)."""
    language = language or kw.language_of(theme)
    result = ThemeUnderstanding(text=str(theme or ""), language=language)
    if not result.text.strip():
        return result
    if language == "zh":
        _understand_zh(result, script)
    else:
        _understand_en(result)
        from synesthesia import wordnet

        if not wordnet.available():
            result.notes.append(f"no related English words: WordNet files not found in {wordnet.wordnet_dir()} "
                                "(apt-get install wordnet-base)")
    return result


# --------------------------------------------------------------------------------------------------
# Measuring a text against its theme

FILLER_ZH = frozenset("不無无")  # 6.3% of our poems' characters were 不 (real Tang: 2.0%)
FILLER_WEIGHT = 10.0  # quality penalty per unit of filler share
REPEAT_WEIGHT = 2.0  # quality penalty per unit of repeated-word share


def contains_keyword(text: str, keyword: str, language: str | None = None) -> bool:
    """Whether ``text`` holds ``keyword``: as characters for Chinese, as a whole word (plural too) for
    English."""
    if not keyword:
        return False
    if kw.is_han(keyword) or (language == "zh" and not re.search(r"[A-Za-z]", keyword)):
        return keyword in text or kw.to_simplified(keyword) in kw.to_simplified(text)
    return re.search(rf"(?<![A-Za-z]){re.escape(keyword)}(?:s|es)?(?![A-Za-z])", text, re.IGNORECASE) is not None


def theme_coverage(text: str, theme: ThemeUnderstanding) -> float:
    """Share of the theme's keywords in ``text``, the theme's own words weighing double: 1.0 when every
    keyword is there; 0.0 with none (or no theme)."""
    own, related = theme.words, [w for w in theme.keywords if w not in theme.words]
    total = 2 * len(own) + len(related)
    if not total:
        return 0.0
    found = 2 * sum(contains_keyword(text, w, theme.language) for w in own)
    found += sum(contains_keyword(text, w, theme.language) for w in related)
    return found / total


def text_quality(text: str, language: str | None) -> dict[str, float]:
    """Filler share (不/無 for Chinese), repeated-word share, and the ranking penalty they add up to."""
    if language == "zh" or (language is None and kw.language_of(text) == "zh"):
        units = [ch for ch in text if kw.is_han(ch)]
        filler = sum(ch in FILLER_ZH for ch in units) / len(units) if units else 0.0
    else:
        units = [w.lower() for w in re.findall(r"[A-Za-z']+", text) if len(w) >= 3]
        filler = 0.0
    repetition = 1.0 - len(set(units)) / len(units) if units else 0.0
    return {"filler": filler, "repetition": repetition,
            "penalty": FILLER_WEIGHT * filler + REPEAT_WEIGHT * repetition}
