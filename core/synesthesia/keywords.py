"""Theme keywords: taken from each training text itself (self-supervised), and from a user's theme.

Training (Jiuge-style): every poem is conditioned on a few of its own salient words, so that at
generation time "autumn, moon" can ask for a poem about them. Salience is TF-IDF over the corpus being
prepared: term frequency in the text times the log inverse document frequency across all texts, counting
only words that occur in at least ``min_df`` texts (rare words are salient but teach the model nothing
it can be asked for again).

- Chinese: words from ``jieba`` (run on a simplified copy, since jieba's dictionary is simplified; the
  keyword is then cut from the original text at the same position, so traditional text keeps its
  characters). Function characters (之 乎 者 也 ...) are never keywords.
- English: lower-cased content words (alphabetic, three letters or more, not a stop word).

Generation: ``map_theme`` turns a user's theme into keywords the model knows. Words the model saw as
keywords are kept; Chinese words it did not see are split into characters it did see; English theme
words asked of a Chinese model go through a small glossary (autumn -> 秋); English words the model did
not see go to a word related in meaning that it did (WordNet, see ``synesthesia.theme``), never to one
spelt alike; what cannot be mapped is reported in ``ThemeKeywords.unknown`` instead of being passed on
silently.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

KEYWORDS_FILE = "keywords.json"  # {"language": ..., "keywords": {word: document count}}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")

# Classical function words and pronouns: grammatical glue, never what a poem is about.
CLASSICAL_FUNCTION_CHARS = frozenset(
    "之乎者也矣焉哉兮而以於于其所為为與与則则乃且亦又或若如何誰谁豈岂安焉此彼是斯茲兹吾我余予汝爾尔君"
    "不無无未莫勿非弗皆俱都只祇但唯惟猶犹尚已既曾將将欲可能得須须應应當当自從从向在到由因故然"
    "一二三四五六七八九十百千萬万兩两幾几個个些"
    # Generic verbs, adverbs and place words: frequent enough to win on TF alone, never a theme.
    "有去來来多的上下中見见更相還还復复今在成出入知令使教看似同共各每著着了"
)

# Early Modern English function words that general stop-word lists lack.
ARCHAIC_STOP_WORDS = frozenset(
    "thou thee thy thine ye hath doth dost art shalt wilt hast didst canst wouldst shouldst couldst "
    "thyself tis twas ere oft nay yea aye o oh ah alas hither thither whither hence thence whence "
    "wherefore upon unto till shall would could should may might must let come go say tell make "
    "sir lord lady good well yet now then here there one two three first second third enter exit exeunt "
    "speak made know like see give take mine".split()
)


@lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    from stop_words import get_stop_words

    return frozenset(w.lower() for w in get_stop_words("english")) | ARCHAIC_STOP_WORDS


def language_of(text: str) -> str:
    """'zh' when at least a third of the letters are Han characters, else 'en'."""
    han = len(_HAN.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if han and han * 3 >= han + latin else "en"


def is_han(text: str) -> bool:
    return bool(text) and all(_HAN.fullmatch(ch) for ch in text)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(60)  # jieba logs its dictionary loading at INFO
    return jieba


def to_simplified(text: str) -> str:
    import zhconv

    return zhconv.convert(text, "zh-hans")


def to_traditional(text: str) -> str:
    import zhconv

    return zhconv.convert(text, "zh-hant")


def chinese_words(text: str) -> list[str]:
    """Content words of a Chinese text, spelled as in ``text`` (traditional stays traditional)."""
    simplified = to_simplified(text)
    # zhconv maps character for character on poetry; if a phrase rule changed the length we cannot cut
    # the original at jieba's offsets, so fall back to the simplified spelling.
    source = text if len(simplified) == len(text) else simplified
    words = []
    for _, start, end in _jieba().tokenize(simplified):
        word = source[start:end]
        if not is_han(word):
            continue
        if len(word) == 1 and (word in CLASSICAL_FUNCTION_CHARS or to_simplified(word) in CLASSICAL_FUNCTION_CHARS):
            continue
        if all(ch in CLASSICAL_FUNCTION_CHARS for ch in to_simplified(word)):
            continue
        words.append(word)
    return words


# A line holding only a speaker's name: a play's cue ("First Citizen:") or a screenplay's ("ROMEO").
# Names say who speaks, not what the passage is about, so they are not keywords.
SPEAKER_CUE_LINE = re.compile(r"(?m)^[ \t]*(?:[A-Z][A-Za-z .'-]*:|[A-Z][A-Z .'-]+)[ \t]*$")


def english_words(text: str) -> list[str]:
    """Lower-cased content words of an English text, speaker-cue lines left out."""
    stop = english_stop_words()
    words = []
    for match in _ENGLISH_WORD.finditer(SPEAKER_CUE_LINE.sub("", text)):
        word = match.group(0).lower().replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        word = word.strip("'-")
        if len(word) >= 3 and word.isascii() and "'" not in word and word not in stop:
            words.append(word)
    return words


def content_words(text: str, language: str) -> list[str]:
    return chinese_words(text) if language == "zh" else english_words(text)


class KeywordExtractor:
    """TF-IDF keywords over one corpus: ``fit`` on all texts first, then ``extract`` each.

    ``fit`` keeps the word lists it computed, so ``extract(i)`` by index does not segment twice.
    """

    def __init__(self, language: str, top_k: int = 3, min_df: int = 2):
        if language not in ("zh", "en"):
            raise ValueError(f"language must be 'zh' or 'en', got {language!r}")
        self.language = language
        self.top_k = top_k
        self.min_df = min_df
        self.document_frequency: Counter[str] = Counter()
        self.n_documents = 0
        self._words: list[list[str]] = []

    def fit(self, texts: Iterable[str]) -> KeywordExtractor:
        self._words = [content_words(text, self.language) for text in texts]
        self.n_documents = len(self._words)
        self.document_frequency = Counter()
        for words in self._words:
            self.document_frequency.update(set(words))
        return self

    def idf(self, word: str) -> float:
        return math.log((1 + self.n_documents) / (1 + self.document_frequency.get(word, 0))) + 1.0

    def keywords_of_words(self, words: Sequence[str]) -> list[str]:
        counts = Counter(w for w in words if self.document_frequency.get(w, 0) >= self.min_df)
        # Ties go to the earlier word, so the result is deterministic and follows the text.
        first = {w: i for i, w in reversed(list(enumerate(words)))}
        ranked = sorted(counts, key=lambda w: (-counts[w] * self.idf(w), first[w]))
        return ranked[: self.top_k]

    def extract(self, index_or_text: int | str) -> list[str]:
        """Keywords of the ``index``-th fitted text, or of a new text."""
        if isinstance(index_or_text, int):
            words = self._words[index_or_text]
        else:
            words = content_words(index_or_text, self.language)
        return self.keywords_of_words(words)


# --------------------------------------------------------------------------------------------------
# From a user's theme to keywords the model knows

# English theme words a Chinese model can be asked in: common imagery of classical poetry.
GLOSSARY_EN_ZH: dict[str, str] = {
    "autumn": "秋", "fall": "秋", "spring": "春", "summer": "夏", "winter": "冬", "moon": "月",
    "moonlight": "月", "sun": "日", "sunset": "夕陽", "dusk": "黃昏", "evening": "晚", "night": "夜",
    "morning": "朝", "dawn": "曉", "star": "星", "stars": "星", "sky": "天", "cloud": "雲", "clouds": "雲",
    "rain": "雨", "snow": "雪", "frost": "霜", "wind": "風", "dew": "露", "mist": "霧", "fog": "霧",
    "thunder": "雷", "river": "江", "rivers": "江", "stream": "溪", "water": "水", "lake": "湖", "sea": "海",
    "ocean": "海", "wave": "波", "waves": "波", "mountain": "山", "mountains": "山", "hill": "山",
    "peak": "峰", "valley": "谷", "rock": "石", "stone": "石", "sand": "沙", "island": "島", "shore": "岸",
    "bridge": "橋", "boat": "舟", "ship": "船", "road": "路", "path": "路", "gate": "門", "door": "門",
    "tower": "樓", "city": "城", "wall": "城", "village": "村", "home": "家", "house": "家",
    "hometown": "故鄉", "homesick": "思鄉", "homesickness": "思鄉", "temple": "寺", "palace": "宮",
    "garden": "園", "window": "窗", "courtyard": "庭", "flower": "花", "flowers": "花", "blossom": "花",
    "plum": "梅", "peach": "桃", "lotus": "蓮", "chrysanthemum": "菊", "orchid": "蘭", "willow": "柳",
    "pine": "松", "bamboo": "竹", "tree": "樹", "trees": "樹", "grass": "草", "leaf": "葉", "leaves": "葉",
    "forest": "林", "woods": "林", "bird": "鳥", "birds": "鳥", "goose": "雁", "geese": "雁", "crane": "鶴",
    "swallow": "燕", "oriole": "鶯", "crow": "烏", "cuckoo": "杜鵑", "horse": "馬", "fish": "魚",
    "monkey": "猿", "dragon": "龍", "butterfly": "蝶", "cicada": "蟬", "wine": "酒", "tea": "茶",
    "zither": "琴", "music": "琴", "song": "歌", "flute": "笛", "bell": "鐘", "lamp": "燈", "candle": "燭",
    "sword": "劍", "book": "書", "letter": "書", "poem": "詩", "poetry": "詩", "brush": "筆",
    "friend": "友", "friends": "故人", "guest": "客", "traveller": "客", "traveler": "客", "wanderer": "客",
    "farewell": "別", "parting": "別", "goodbye": "別", "return": "歸", "journey": "行", "travel": "遊",
    "soldier": "征人", "war": "戰", "frontier": "塞", "border": "邊", "hermit": "隱", "monk": "僧",
    "emperor": "君", "beauty": "佳人", "woman": "美人", "love": "情", "longing": "思", "missing": "思",
    "sorrow": "愁", "sadness": "愁", "grief": "悲", "tears": "淚", "joy": "歡", "dream": "夢",
    "dreams": "夢", "heart": "心", "spirit": "心", "old": "老", "age": "老", "youth": "少年", "time": "時",
    "years": "年", "year": "年", "past": "古", "ancient": "古", "history": "古", "life": "生", "death": "死",
    "silence": "靜", "quiet": "靜", "solitude": "獨", "alone": "獨", "lonely": "孤", "cold": "寒",
    "warm": "暖", "green": "青", "white": "白", "red": "紅", "gold": "金", "golden": "金", "jade": "玉",
    "light": "光", "shadow": "影", "smoke": "煙", "fire": "火", "sound": "聲", "fragrance": "香",
    "east": "東", "west": "西", "south": "南", "north": "北", "heaven": "天", "earth": "地",
    "world": "天下", "country": "國", "sky-blue": "碧", "blue": "碧", "fisherman": "漁", "farmer": "農",
    "field": "田", "fields": "田", "harvest": "秋", "mirror": "鏡", "pavilion": "亭", "cliff": "崖",
    "waterfall": "瀑", "spring-water": "泉", "fountain": "泉", "well": "井", "mountain-pass": "關",
    "pass": "關", "desert": "沙", "battle": "戰", "peace": "平", "immortal": "仙", "cranes": "鶴",
}


@dataclass
class ThemeKeywords:
    """What ``map_theme`` made of a theme: the keywords to condition on, and what it changed or dropped."""

    keywords: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # theme words with no keyword the model knows
    substitutions: dict[str, str] = field(default_factory=dict)  # theme word -> keyword(s) used instead

    def describe(self) -> str:
        parts = []
        if self.substitutions:
            parts.append("; ".join(f"{k} → {v}" for k, v in self.substitutions.items()))
        if self.unknown:
            parts.append("not in the model's vocabulary: " + ", ".join(self.unknown))
        return " | ".join(parts)


def split_theme(theme: str | Sequence[str]) -> list[str]:
    """Theme words from a string ("autumn moon", "秋,月", "秋月") or a list, in order, without repeats."""
    items = [theme] if isinstance(theme, str) else list(theme)
    words: list[str] = []
    for item in items:
        for chunk in re.split(r"[\s,，、;；/|]+", str(item)):
            chunk = chunk.strip()
            if not chunk:
                continue
            if is_han(chunk) and len(chunk) > 2:
                words.extend(w for w in _jieba().lcut(chunk) if w.strip())
            else:
                words.append(chunk)
    return list(dict.fromkeys(words))


def load_keyword_vocabulary(checkpoint_dir: str | Path) -> dict[str, int] | None:
    """The keywords a checkpoint was trained with (``keywords.json`` beside the weights), if shipped."""
    path = Path(checkpoint_dir) / KEYWORDS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return dict(data.get("keywords", {}))


def _known_chars(tokenizer) -> set[str] | None:
    chars = getattr(tokenizer, "chars", None)
    return set(chars) if chars is not None else None


def map_theme(
    theme: str | Sequence[str],
    *,
    language: str,
    vocabulary: dict[str, int] | Iterable[str] | None = None,
    tokenizer=None,
    script: str | None = None,
    max_keywords: int = 4,
) -> ThemeKeywords:
    """Turn a user's theme into keywords for a model of ``language`` ('zh' or 'en').

    ``vocabulary`` is the model's keyword vocabulary (``load_keyword_vocabulary``); ``tokenizer``, when
    given, tells which characters the model can write. ``script`` is 'traditional' or 'simplified' for a
    Chinese model (default: traditional, like the shipped ``tang`` model).
    """
    vocab = set(vocabulary) if vocabulary is not None else None
    chars = _known_chars(tokenizer) if tokenizer is not None else None
    result = ThemeKeywords()

    def known_word(word: str) -> bool:
        if vocab is not None:
            return word in vocab
        return chars is None or all(ch in chars for ch in word)

    def known_char(ch: str) -> bool:
        if vocab is not None and ch in vocab:
            return True
        if chars is not None:
            return ch in chars
        return vocab is None

    from synesthesia.theme import THEME_STOP_EN

    for word in split_theme(theme):
        if len(result.keywords) >= max_keywords:
            break
        if language != "zh" and word.lower() in THEME_STOP_EN:
            continue  # "harbor at dawn": glue, not theme
        if language == "zh":
            mapped = _map_chinese_word(word, script or "traditional", known_word, known_char)
        else:
            mapped = _map_english_word(word, vocab, known_word)
        if not mapped:
            result.unknown.append(word)
            continue
        if mapped != [word]:
            result.substitutions[word] = " ".join(mapped)
        for keyword in mapped:
            if keyword not in result.keywords and len(result.keywords) < max_keywords:
                result.keywords.append(keyword)
    return result


def _map_chinese_word(word: str, script: str, known_word, known_char) -> list[str]:
    if not is_han(word):
        glossed = GLOSSARY_EN_ZH.get(word.lower())
        if glossed is None:
            glossed = GLOSSARY_EN_ZH.get(word.lower().rstrip("s"))
        if glossed is None:
            return []
        word = glossed
    word = to_simplified(word) if script == "simplified" else to_traditional(word)
    if known_word(word):
        return [word]
    # A word the model never saw as a keyword: its characters it did see, in order.
    return [ch for ch in word if ch not in CLASSICAL_FUNCTION_CHARS and known_char(ch)]


def _english_variants(word: str) -> list[str]:
    w = word.lower()
    variants = [w]
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
                         ("ly", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            variants.append(w[: -len(suffix)] + repl)
    variants += [w + "s", w + "es"]
    return list(dict.fromkeys(variants))


def _map_english_word(word: str, vocab: set[str] | None, known_word) -> list[str]:
    if is_han(word):
        return []
    w = word.lower()
    if not re.fullmatch(r"[a-z][a-z'-]*", w):
        return []
    if vocab is None:
        return [w] if known_word(w) else []
    for variant in _english_variants(w):
        if variant in vocab:
            return [variant]
    # Then by meaning (WordNet), never by spelling: "old violin" must not become "told".
    from synesthesia.theme import english_related

    for related in english_related(w, limit=16):
        for variant in _english_variants(related):
            if variant in vocab:
                return [variant]
    return []
