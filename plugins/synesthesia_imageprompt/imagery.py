"""Finding a poem's imagery: the concrete things, colours, light, season, weather, place and mood it names.

Diffusion models are prompted in English, so every image is carried as an English phrase.

- Chinese: Traditional characters are converted to Simplified (``zhconv``), the text is segmented with
  ``jieba`` (its dictionary extended with our lexicon so that 孤舟 or 寒山寺 stay whole), and each segment is
  matched greedily, longest entry first, against a lexicon of classical imagery (``data/imagery_zh.json``).
- English: words are lemmatised with ``simplemma`` and looked up in a curated lexicon of concrete nouns,
  colours, light, season, weather, place and mood words (``data/imagery_en.json``); two-word phrases first.

What the lexicon does not know is reported, never silently dropped: ``Imagery.not_understood``.

The artist's theme is read the same way (``theme_imagery``): a Chinese theme through the same glossary
(秋月 → "autumn moon", 江雪 → "river snow"), characters it lacks kept as written; an English theme is its own
words. The prompt leads with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources

# Kinds of image, most concrete first. The first five-ish become the picture's subject.
CONCRETE_KINDS = ("sky", "weather", "water", "land", "plant", "animal", "building", "object", "person", "place")
SETTING_KINDS = ("season", "time")
QUALITY_KINDS = ("colour", "light", "mood", "action")
ALL_KINDS = CONCRETE_KINDS + SETTING_KINDS + QUALITY_KINDS
ANIMATE_KINDS = ("animal", "person", "plant", "water", "weather", "sky")  # things that can take an action

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_EN_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")


@dataclass
class Image:
    """One image found in the text."""

    word: str  # as written (Simplified for Chinese)
    en: str  # English phrase for the prompt
    kind: str  # one of ALL_KINDS
    count: int = 1
    first: int = 0  # position of the first occurrence, in segments (Chinese) or words (English)
    last: int = 0  # position of the latest occurrence
    doing: str = ""  # an action the poem gives this image ("crying" for 乌啼)

    @property
    def phrase(self) -> str:
        """The prompt phrase: the image with its action, if any."""
        return f"{self.en} {self.doing}" if self.doing else self.en

    @property
    def concrete(self) -> bool:
        return self.kind in CONCRETE_KINDS


@dataclass
class Imagery:
    language: str  # "zh" or "en"
    images: list[Image] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # function words, skipped on purpose
    converted_from_traditional: bool = False

    def of_kind(self, *kinds: str) -> list[Image]:
        return [image for image in self.images if image.kind in kinds]

    def to_json(self) -> dict:
        data = asdict(self)
        for image, entry in zip(self.images, data["images"], strict=True):
            entry["concrete"] = image.concrete
        return data


def _data(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8"))


def detect_language(text: str) -> str:
    cjk = len(_CJK.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if cjk and cjk * 2 >= latin else "en"


def extract(text: str, language: str | None = None) -> Imagery:
    """The imagery of ``text``; ``language`` ("zh"/"en") is detected when not given."""
    language = language if language in ("zh", "en") else detect_language(text)
    return _extract_chinese(text) if language == "zh" else _extract_english(text)


# --------------------------------------------------------------------------------------------------
# Chinese


@lru_cache(maxsize=1)
def _zh_lexicon() -> tuple[dict[str, tuple[str, str]], frozenset[str], int]:
    raw = _data("imagery_zh.json")
    lexicon: dict[str, tuple[str, str]] = {}
    for kind in ALL_KINDS:  # concrete kinds first, so they win a word listed twice
        for word, en in raw.get(kind, {}).items():
            lexicon.setdefault(word, (en, kind))
    function_words = frozenset(raw["_function"].split())
    longest = max(len(word) for word in [*lexicon, *function_words])
    return lexicon, function_words, longest


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()  # our own instance: the global one belongs to other plugins
    lexicon, function_words, _ = _zh_lexicon()
    for word in [*lexicon, *function_words]:
        if len(word) > 1:
            tokenizer.add_word(word, freq=20000)
    return tokenizer


def to_simplified(text: str) -> str:
    import zhconv

    return zhconv.convert(text, "zh-hans")


def _extract_chinese(text: str) -> Imagery:
    lexicon, function_words, longest = _zh_lexicon()
    simplified = to_simplified(text)
    result = Imagery(language="zh", converted_from_traditional=simplified != text)
    found: dict[str, Image] = {}
    unknown: list[str] = []
    last_concrete: Image | None = None
    for position, segment in enumerate(_jieba().lcut(simplified)):
        if not _CJK.search(segment):
            continue
        # Longest entry (image or function word, so 二月 "February" is not read as 月 "moon") at each
        # point of the segment; characters matching nothing are gathered into one unknown run.
        i, run = 0, ""
        while i < len(segment):
            for size in range(min(longest, len(segment) - i), 0, -1):
                piece = segment[i : i + size]
                if piece in lexicon or piece in function_words:
                    break
            else:
                if _CJK.match(segment[i]):
                    run += segment[i]
                i += 1
                continue
            if run:
                unknown.append(run)
                run = ""
            i += size
            if piece in function_words and piece not in lexicon:
                result.ignored.append(piece)
                continue
            en, kind = lexicon[piece]
            # A verb right after a thing belongs to it: 乌啼 "crows crying", 鸟飞 "birds flying".
            # Only living and moving things: 门泊 is "a boat moored at the gate", not "gate moored".
            if (kind == "action" and last_concrete is not None and not last_concrete.doing
                    and last_concrete.kind in ANIMATE_KINDS and position - last_concrete.last <= 1
                    and en not in last_concrete.en):
                last_concrete.doing = en
                continue
            image = _add(found, piece, en, kind, position)
            if image.concrete:
                last_concrete = image
        if run:
            unknown.append(run)
    result.images = _ordered(found)
    result.not_understood = list(dict.fromkeys(unknown))
    result.ignored = list(dict.fromkeys(result.ignored))
    return result


# --------------------------------------------------------------------------------------------------
# English


@lru_cache(maxsize=1)
def _en_lexicon() -> tuple[dict[str, str], dict[str, str], dict[str, str], frozenset[str], frozenset[str]]:
    raw = _data("imagery_en.json")
    kinds = {word: kind for kind, words in raw["kinds"].items() for word in words}
    # Words whose lemma would mislead (simplemma reads "bare" as "bear", "fell" as "fall").
    no_lemma = frozenset(raw["no_lemma"])
    return kinds, raw["phrases"], raw["bigrams"], frozenset(raw["function_words"]), no_lemma


def _lemma(word: str) -> str:
    import simplemma

    return simplemma.lemmatize(word, lang="en").lower()


def _extract_english(text: str) -> Imagery:
    kinds, phrases, bigrams, function_words, no_lemma = _en_lexicon()
    words = [w.lower().replace("’", "'") for w in _EN_WORD.findall(text)]
    words = [w[:-2] if w.endswith("'s") else w for w in words]
    result = Imagery(language="en")
    found: dict[str, Image] = {}
    unknown: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if i + 1 < len(words):
            pair = f"{word} {words[i + 1]}"
            if pair in bigrams:
                _add(found, pair, phrases.get(pair, pair), bigrams[pair], i)
                i += 2
                continue
        i += 1
        if word in function_words:
            result.ignored.append(word)
            continue
        # The word as written first ("leaves" is a noun here far more often than the verb "leave").
        candidates = (word,) if word in no_lemma else (word, _lemma(word), word.rstrip("s"))
        for candidate in candidates:
            if candidate in kinds:
                kind = kinds[candidate]
                # "buds", "foxes": a concrete noun keeps the number the poem gave it.
                en = phrases.get(candidate) or (word if kind in CONCRETE_KINDS and word.endswith("s") else candidate)
                _add(found, candidate, en, kind, i)
                break
        else:
            if len(word) > 1:
                unknown.append(word)
    result.images = _ordered(found)
    result.not_understood = list(dict.fromkeys(unknown))
    result.ignored = list(dict.fromkeys(result.ignored))
    return result


# --------------------------------------------------------------------------------------------------


def _add(found: dict[str, Image], word: str, en: str, kind: str, position: int) -> Image:
    key = en  # 明月 and 月 both count towards one image only when they say the same thing
    if key in found:
        found[key].count += 1
        found[key].last = position
    else:
        found[key] = Image(word=word, en=en, kind=kind, first=position, last=position)
    return found[key]


def _ordered(found: dict[str, Image]) -> list[Image]:
    """Most salient first: concrete before setting before qualities, then repeated, then early."""
    rank = {kind: n for n, kind in enumerate(ALL_KINDS)}
    group = lambda image: 0 if image.concrete else 1 if image.kind in SETTING_KINDS else 2  # noqa: E731
    return sorted(found.values(), key=lambda im: (group(im), -im.count, im.first, rank[im.kind]))


# --------------------------------------------------------------------------------------------------
# The artist's theme


@dataclass
class ThemeImagery:
    """The theme as prompt imagery: ``phrase`` leads the prompt; ``parts`` say where each piece came from."""

    theme: str  # as the artist gave it
    phrase: str  # English (or as written) for the prompt; "" without a theme
    language: str  # "zh", "en" or "" (no theme)
    parts: list[dict] = field(default_factory=list)  # {"word", "en", "kind", "source": "glossary" | "as written"}

    def to_json(self) -> dict:
        return asdict(self)


def theme_imagery(theme: str | None) -> ThemeImagery:
    """English imagery for a theme: Chinese through the glossary, longest entry first (words it lacks are
    kept as written, never dropped); English words as the artist wrote them."""
    theme = re.sub(r"\s+", " ", theme or "").strip()
    if not theme:
        return ThemeImagery(theme="", phrase="", language="")
    if not _CJK.search(theme):
        kinds, phrases, bigrams, function_words, _ = _en_lexicon()
        parts = []
        for word in _EN_WORD.findall(theme):
            lower = word.lower()
            kind = kinds.get(lower) or kinds.get(_lemma(lower)) or ("function" if lower in function_words else "")
            parts.append({"word": word, "en": word, "kind": kind, "source": "as written"})
        return ThemeImagery(theme=theme, phrase=theme, language="en", parts=parts)
    lexicon, function_words, longest = _zh_lexicon()
    simplified = to_simplified(theme)
    parts: list[dict] = []
    i, run = 0, ""

    def flush() -> None:
        nonlocal run
        if run.strip():
            parts.append({"word": run.strip(), "en": run.strip(), "kind": "", "source": "as written"})
        run = ""

    while i < len(simplified):
        if not _CJK.match(simplified[i]):
            run += simplified[i]
            i += 1
            continue
        for size in range(min(longest, len(simplified) - i), 0, -1):
            piece = simplified[i : i + size]
            if piece in lexicon or piece in function_words:
                break
        else:
            run += simplified[i]
            i += 1
            continue
        flush()
        i += size
        if piece in lexicon:
            en, kind = lexicon[piece]
            parts.append({"word": piece, "en": en, "kind": kind, "source": "glossary"})
    flush()
    phrase = " ".join(dict.fromkeys(part["en"] for part in parts))
    return ThemeImagery(theme=theme, phrase=phrase, language="zh", parts=parts)
