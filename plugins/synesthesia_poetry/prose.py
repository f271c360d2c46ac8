"""Prose forms: screenplay scenes (Fountain) and story fragments, written on a theme.

The shipped English model learned drama (``FRIAR LAURENCE:`` cues, verse), never a screenplay, so the
structure it cannot learn is placed by the form and only the content is the model's:

- **screenplay**: the scene heading is built from the theme and a small place/time vocabulary
  (``lighthouse keeper`` → ``EXT. LIGHTHOUSE - EVENING``; ``form_options.heading`` wins) and prompted as
  the text's first line; then ``ProseProcessor`` walks through the parts: an action paragraph (opened
  with "The", then model-written sentences of dictionary words; the theme phrase is forced in right after
  a determiner, or with "the" at the 8th word, if the model has not written a theme word by then), then
  ``form_options.exchanges`` (2–4, default 3) character cues — uppercase names from a small cast (a
  person named by the theme, e.g. ``KEEPER``, and invented names; ``form_options.cast`` overrides) the
  model picks between, never the same speaker twice running — each followed by one speech. Elements are
  separated by blank lines (valid Fountain); ``<eos>`` after the last speech.
- **story**: one paragraph of sentences of dictionary words, the theme phrase forced in by a deadline,
  ending on the first full sentence after ``form_options.min_words`` (default 40).

Words come from ``constraints.english_lexicon`` (CMU words among the common ones) plus the theme's own
words; no colon, no capitals inside words, capitals at a sentence's start, ``I`` as the only capital
word inside a sentence. Char-level tokenizers only: a BPE model gets the heading and the validators.

Validators check the shape (``validate_screenplay``: heading first, action, cue followed by dialogue;
``validate_story``: length and a final full stop) and, given the request, whether the theme is mentioned
in the body (action and dialogue; the heading does not count): a text that never names its theme keeps
its verdict but scores lower, with a problem line saying so.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from synesthesia.components import Conditioning, Form, FormRequest, Validation
from synesthesia.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# Theme words


def theme_words(request: FormRequest | None) -> list[str]:
    """The theme's own content words (lower case, in order); ``request.keywords`` when the theme has none."""
    if request is None:
        return []
    from synesthesia.keywords import english_words

    words = [w for w in english_words(request.theme or "") if w.isalpha()]
    if not words:
        words = [str(w).lower() for w in request.keywords if str(w).isascii() and str(w).isalpha()][:2]
    return list(dict.fromkeys(words))


def planning_words(request: FormRequest) -> list[str]:
    """The words a form plans with: ``request.keywords`` (theme words, then related ones), else the theme's."""
    words = [str(w).lower() for w in request.keywords if str(w).isascii() and str(w).replace("-", "").isalpha()]
    return list(dict.fromkeys(words)) or theme_words(request)


def word_variants(word: str) -> set[str]:
    """Spellings that count as mentioning ``word``: plural, possessive, singular."""
    w = word.lower()
    forms = {w, w + "s", w + "'s", w + "s'"}
    if re.search(r"(?:s|x|z|ch|sh|o)$", w):
        forms.add(w + "es")
    if w.endswith("y") and len(w) > 2:
        forms.add(w[:-1] + "ies")
    if w.endswith("s") and len(w) > 3:
        forms.add(w[:-1])
    if w.endswith("es") and len(w) > 4:
        forms.add(w[:-2])
    return forms


def theme_mentions(text: str, words: Sequence[str]) -> list[str]:
    """The theme words that ``text`` mentions (in any of their ``word_variants``)."""
    found = set(re.findall(r"[a-z]+(?:'[a-z]*)?", text.lower().replace("’", "'")))
    return [w for w in words if word_variants(w) & found]


def _theme_problem(body: str, request: FormRequest | None) -> str | None:
    words = theme_words(request)
    if not words or theme_mentions(body, words):
        return None
    return f"the theme is never mentioned (none of: {', '.join(words)})"


THEME_MISS_FACTOR = 0.6  # a text that never names its theme keeps this share of its score

# --------------------------------------------------------------------------------------------------
# Scene headings and cast, from a small curated vocabulary

# Place words (a theme's own, or imagery that suggests a place) -> (INT/EXT, location).
PLACES: dict[str, tuple[str, str]] = {
    "lighthouse": ("EXT", "LIGHTHOUSE"), "sea": ("EXT", "SHORE"), "ocean": ("EXT", "SHORE"),
    "beach": ("EXT", "BEACH"), "shore": ("EXT", "SHORE"), "coast": ("EXT", "COAST ROAD"),
    "cliff": ("EXT", "CLIFF TOP"), "harbour": ("EXT", "HARBOUR"), "harbor": ("EXT", "HARBOR"),
    "port": ("EXT", "HARBOUR"), "island": ("EXT", "ISLAND"), "river": ("EXT", "RIVERBANK"),
    "lake": ("EXT", "LAKESIDE"), "pond": ("EXT", "POND"), "forest": ("EXT", "FOREST"), "wood": ("EXT", "WOODS"),
    "woods": ("EXT", "WOODS"), "mountain": ("EXT", "MOUNTAIN PASS"), "mountains": ("EXT", "MOUNTAIN PASS"),
    "hill": ("EXT", "HILLSIDE"), "valley": ("EXT", "VALLEY"), "desert": ("EXT", "DESERT"),
    "field": ("EXT", "FIELD"), "fields": ("EXT", "FIELD"), "farm": ("EXT", "FARMYARD"),
    "orchard": ("EXT", "ORCHARD"), "garden": ("EXT", "GARDEN"), "park": ("EXT", "PARK"),
    "street": ("EXT", "STREET"), "road": ("EXT", "ROAD"), "city": ("EXT", "CITY STREET"),
    "town": ("EXT", "TOWN SQUARE"), "village": ("EXT", "VILLAGE"), "bridge": ("EXT", "BRIDGE"),
    "well": ("EXT", "WELL"), "cemetery": ("EXT", "CEMETERY"), "graveyard": ("EXT", "GRAVEYARD"),
    "grave": ("EXT", "CEMETERY"), "battlefield": ("EXT", "BATTLEFIELD"), "war": ("EXT", "TRENCH"),
    "battle": ("EXT", "BATTLEFIELD"), "market": ("EXT", "MARKET"), "snow": ("EXT", "SNOWFIELD"),
    "ice": ("EXT", "FROZEN LAKE"), "storm": ("EXT", "CLIFF TOP"), "rain": ("EXT", "STREET"),
    "ship": ("EXT", "SHIP'S DECK"), "boat": ("EXT", "BOAT"), "sky": ("EXT", "ROOFTOP"),
    "roof": ("EXT", "ROOFTOP"), "station": ("INT", "STATION"), "train": ("INT", "TRAIN CARRIAGE"),
    "railway": ("INT", "STATION"), "church": ("INT", "CHURCH"), "chapel": ("INT", "CHAPEL"),
    "cathedral": ("INT", "CATHEDRAL"), "temple": ("INT", "TEMPLE"), "castle": ("INT", "CASTLE HALL"),
    "palace": ("INT", "PALACE"), "tower": ("INT", "TOWER"), "kitchen": ("INT", "KITCHEN"),
    "house": ("INT", "HOUSE"), "home": ("INT", "HOUSE"), "room": ("INT", "ROOM"), "bedroom": ("INT", "BEDROOM"),
    "hospital": ("INT", "HOSPITAL WARD"), "school": ("INT", "CLASSROOM"), "library": ("INT", "LIBRARY"),
    "museum": ("INT", "MUSEUM"), "prison": ("INT", "PRISON CELL"), "office": ("INT", "OFFICE"),
    "shop": ("INT", "SHOP"), "bakery": ("INT", "BAKERY"), "tavern": ("INT", "TAVERN"), "inn": ("INT", "INN"),
    "bar": ("INT", "BAR"), "theatre": ("INT", "THEATRE"), "theater": ("INT", "THEATER"),
    "hotel": ("INT", "HOTEL ROOM"), "attic": ("INT", "ATTIC"), "cellar": ("INT", "CELLAR"),
    "cave": ("INT", "CAVE"), "mine": ("INT", "MINE SHAFT"), "factory": ("INT", "FACTORY FLOOR"),
    "airport": ("INT", "AIRPORT"), "studio": ("INT", "STUDIO"),
    # imagery that suggests a place
    "letter": ("INT", "POST OFFICE"), "letters": ("INT", "POST OFFICE"), "book": ("INT", "LIBRARY"),
    "books": ("INT", "LIBRARY"), "bread": ("INT", "BAKERY"), "wine": ("INT", "TAVERN"),
    "music": ("INT", "MUSIC ROOM"), "piano": ("INT", "PARLOUR"), "violin": ("INT", "MUSIC ROOM"),
    "clock": ("INT", "CLOCKMAKER'S SHOP"), "candle": ("INT", "ATTIC"), "lamp": ("INT", "ATTIC"),
    "mirror": ("INT", "BEDROOM"), "bees": ("EXT", "APIARY"), "bee": ("EXT", "APIARY"),
    "harvest": ("EXT", "FIELD"), "flood": ("EXT", "FLOODED STREET"), "fire": ("EXT", "BURNING HOUSE"),
    "funeral": ("EXT", "CEMETERY"), "wedding": ("INT", "CHURCH"), "stars": ("EXT", "HILLTOP"),
    "moon": ("EXT", "HILLTOP"),
}

# Times of day a theme can name; otherwise one is picked from the theme's checksum.
TIMES: dict[str, str] = {
    "night": "NIGHT", "midnight": "NIGHT", "moon": "NIGHT", "moonlight": "NIGHT", "stars": "NIGHT",
    "star": "NIGHT", "dark": "NIGHT", "darkness": "NIGHT", "evening": "EVENING", "dusk": "DUSK",
    "twilight": "DUSK", "sunset": "DUSK", "dawn": "DAWN", "sunrise": "DAWN", "morning": "MORNING",
    "noon": "DAY", "afternoon": "DAY", "sun": "DAY", "sunlight": "DAY", "summer": "DAY",
}
DEFAULT_TIMES = ("NIGHT", "DAY", "MORNING", "EVENING")

# People a theme can name: their word becomes a character cue (KEEPER).
PERSONS = frozenset("""
keeper sailor fisherman soldier king queen prince princess mother father son daughter brother sister
child widow widower orphan teacher doctor nurse priest nun monk farmer baker miner captain pilot driver
thief detective poet painter musician singer dancer clown witch ghost stranger traveller traveler
pilgrim hermit knight shepherd gardener hunter lover bride groom friend neighbour neighbor grandmother
grandfather wife husband boy girl man woman beekeeper clockmaker astronaut scientist cook chef waiter
waitress clerk postman ferryman boatman blacksmith smith tailor servant maid butler judge lawyer spy
prisoner guard jailer gravedigger undertaker mayor emperor empress astronomer diver miller weaver potter
carpenter mason librarian beggar refugee exile runaway violinist pianist fiddler actor actress
messenger soldier general admiral sheriff outlaw cowboy nanny grandmother twin twins giant
""".split())
CAST = ("MARA", "TOMAS", "ELLEN", "JONAH", "RUTH", "SILAS", "NORA", "ABEL", "IRIS", "OWEN", "LENA",
        "CALEB", "EDITH", "FELIX", "HANNAH", "VICTOR")


def _checksum(text: str) -> int:
    return zlib.crc32(text.strip().lower().encode("utf-8"))


def scene_heading(request: FormRequest) -> str:
    """``form_options.heading`` (made a Fountain heading if it is not one), else one built from the theme."""
    from synesthesia_poetry.forms import SCENE_HEADING

    given = str(request.options.get("heading") or "").strip()
    if given:
        given = given.upper()
        return given if SCENE_HEADING.match(given) else "." + given.lstrip(".")
    words = planning_words(request)
    own = theme_words(request)
    place = next((PLACES[w] for w in own + words if w in PLACES), None)
    time = next((TIMES[w] for w in own + words if w in TIMES), None)
    time = time or DEFAULT_TIMES[_checksum(request.theme) % len(DEFAULT_TIMES)]
    if place is None:
        person = _theme_person(request)
        place = ("INT", f"{person}'S ROOM") if person else ("INT", ("KITCHEN", "HALLWAY", "STAIRWELL",
                                                                     "BEDROOM")[_checksum(request.theme) % 4])
    return f"{place[0]}. {place[1]} - {time}"


def _theme_person(request: FormRequest) -> str | None:
    for word in reversed(theme_words(request)):  # the head noun comes last: the clockmaker's DAUGHTER
        if word in PERSONS or (len(word) > 4 and (word.endswith("man") or word.endswith("woman"))):
            return word.upper()
    return None


def cast(request: FormRequest) -> list[str]:
    """Who may speak: ``form_options.cast``, else a person named by the theme and one or two names."""
    given = request.options.get("cast")
    if given:
        names = [s for s in re.split(r"\s*,\s*", given) if s] if isinstance(given, str) else list(given)
        names = [re.sub(r"[^A-Z' ]", "", str(n).upper()).strip() for n in names]
        names = [n for n in dict.fromkeys(names) if n]
        if len(names) < 2:
            raise ConfigError(f"form_options.cast needs at least two names, got {given!r}")
        return names
    person = _theme_person(request)
    start = _checksum(request.theme) % len(CAST)
    names = [person] if person else []
    for i in range(len(CAST)):
        name = CAST[(start + 3 * i) % len(CAST)]
        if len(names) >= 2:
            break
        if not any(n.startswith(name) or name.startswith(n) for n in names):
            names.append(name)
    return names


def _exchanges(request: FormRequest) -> int:
    value = request.options.get("exchanges", 3)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"form_options.exchanges must be 2, 3 or 4, got {value!r}") from None
    if value not in (2, 3, 4):
        raise ConfigError(f"form_options.exchanges must be 2, 3 or 4, got {value!r}")
    return value


def _min_words(request: FormRequest | None) -> int:
    value = (request.options.get("min_words") if request else None) or 40
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"form_options.min_words must be a positive number, got {value!r}") from None
    if value < 1:
        raise ConfigError(f"form_options.min_words must be a positive number, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# The decoding state machine


@dataclass(frozen=True)
class Span:
    """A stretch of model-written sentences: at least ``min_words`` words, ended on the first sentence end
    after that (nudged from there, forced at ``max_words``), then ``after`` (e.g. a blank line).

    ``theme``: "force" writes the theme phrase in if the model has not named a theme word by
    ``theme_by`` words (earlier, from ``theme_from`` words on, right after a determiner); "offer" only
    does the latter, once per text; None leaves the theme to the model."""

    min_words: int
    max_words: int
    after: str = "\n\n"
    theme: str | None = None
    theme_from: int = 2
    theme_by: int = 8
    plain_start: bool = False  # the first word is followed by a space (not "Keeper;", a cue's echo)
    opener: str = ""  # forced at the span's start
    enders: str = ".!?"  # the marks that may end a sentence
    sentence_words: int = 1  # the fewest words a sentence has before it may end


@dataclass(frozen=True)
class Cue:
    """A character cue: one of ``names`` (not the previous speaker), then a line break."""

    names: tuple[str, ...]


@dataclass
class _Row:
    part: int = -1
    queue: list[int] = field(default_factory=list)  # token ids forced next
    then_next: bool = False  # when the queue drains, go on to the next part
    # in a span
    words: int = 0
    sentence_words: int = 0  # words of the current sentence
    partial: str = ""
    last: str = ""  # the span's last piece ("" at its start)
    sentence_start: bool = True
    prev_word: str = ""
    gap: str = ""  # what came between the previous word and here
    theme_seen: bool = False
    lock: str = ""  # a forced theme word being written: it may only grow into its variants (sea -> seas)
    offered: bool = False  # the scene has had its "offer" of the theme
    # in a cue
    cue: str = ""
    speaker: str = ""
    done: bool = False


DETERMINERS = frozenset("the a an my thy his her our their your this that these those its".split())
# Words a sentence should not end on when it is cut at max_words.
DANGLING = frozenset("""the a an and or but of to in on at by for with from as my thy his her our their your
this that its is are was were be will shall not no so than then if when which who whose whom o nor""".split())
LINKING_WORDS = frozenset("and or of at in on by to for with from under over near".split())
SENTENCE_ENDS = ".!?"
_CLAUSE = ",;"
_INNER_CAPITAL_WORDS = ("i", "i'm", "i'll", "i'd", "i've")


def _article_fits(article: str, phrase: str) -> bool:
    """Whether ``phrase`` may follow ``article`` ("an" before a vowel, "a" before a consonant)."""
    vowel = phrase[:1].lower() in "aeiou"
    return not ((article == "a" and vowel) or (article == "an" and not vowel))


class ProseProcessor:
    """Walks each candidate through ``parts`` (``Span`` and ``Cue``), then ``<eos>``; char-level only.

    All decisions (forcing the theme phrase, a span's end, the next cue) are taken as a token is read,
    so a row's state is a function of its tokens (``RowStates`` may rebuild it from the history)."""

    def __init__(self, tokenizer, parts: Sequence[Span | Cue], theme_phrase: str = "",
                 theme_words: Sequence[str] = (), offer_word: str = ""):
        import torch

        from synesthesia_poetry.constraints import RowStates, english_lexicon, english_vocab

        self.parts = list(parts)
        self.lexicon = english_lexicon()
        self.vocab = english_vocab(tokenizer)
        size = int(tokenizer.vocab_size)
        self.pieces = [str(tokenizer.id_to_piece(i)) for i in range(size)]
        self.ids = {}
        for i, piece in enumerate(self.pieces):
            if len(piece) == 1:
                self.ids.setdefault(piece, i)

        def mask(chars: str):
            m = torch.zeros(size, dtype=torch.bool)
            for ch in chars:
                if ch in self.ids:
                    m[self.ids[ch]] = True
            return m

        self.space, self.clause = mask(" "), mask(_CLAUSE)
        self._mask = mask
        self.end_ids = [self.ids[c] for c in SENTENCE_ENDS if c in self.ids]
        self.eos = torch.zeros(size, dtype=torch.bool)
        self.eos[self.vocab.eos_id] = True
        self.letters = [(i, p) for i, p in self.vocab.letters]
        self.letter_chars = frozenset(p for _, p in self.letters)
        self.theme_phrase = theme_phrase.lower().strip()
        self.theme_words = [w.lower() for w in theme_words]
        self.offer_word = offer_word.lower().strip()
        self.theme_forms = set().union(*(word_variants(w) for w in self.theme_words)) if self.theme_words else set()
        # Extra words the spans may spell besides the lexicon: the theme's, in every variant.
        extra = set(self.theme_forms) | set(self.theme_phrase.split()) | {self.offer_word}
        self.extra_words = {w for w in extra if w}
        self.extra_prefixes = {w[:k] for w in self.extra_words for k in range(1, len(w) + 1)}
        self._letter_cache: dict[tuple[str, str], Any] = {}
        self._mask = functools.lru_cache(maxsize=None)(self._mask)
        self.tracker = RowStates(self._new_row, self._advance)

    # -- text helpers ---------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return [self.ids[ch] for ch in text if ch in self.ids]

    def _is_word(self, partial: str) -> bool:
        w = partial.lower().replace("’", "'")
        return w in self.extra_words or self.lexicon.word_syllables(w) is not None

    def _letter_mask(self, partial: str, mode: str):
        """Letters that may follow ``partial``. mode: "sentence" (a capital starts the word), "inner"
        (lower case, or the word I), "cap" (inside an inner capitalised word: I, I'm, I'll...)."""
        key = (partial, mode)
        cached = self._letter_cache.get(key)
        if cached is not None:
            return cached
        import torch

        allowed = torch.zeros_like(self.eos)
        low = partial.lower()
        for i, letter in self.letters:
            if partial and letter.isupper():
                continue
            if not partial:
                if mode == "sentence" and not letter.isupper():
                    continue
                if mode == "inner" and letter.isupper() and letter != "I":
                    continue
            candidate = low + letter.lower().replace("’", "'")
            if mode == "cap" or (not partial and mode == "inner" and letter == "I"):
                if not any(w.startswith(candidate) for w in _INNER_CAPITAL_WORDS):
                    continue
            if candidate in self.lexicon.fewest or candidate in self.extra_prefixes:
                allowed[i] = True
        self._letter_cache[key] = allowed
        return allowed

    # -- state ----------------------------------------------------------------------------------
    def _new_row(self) -> _Row:
        row = _Row()
        self._enter(row, 0)
        return row

    def _enter(self, row: _Row, index: int) -> None:
        row.part = index
        row.queue, row.then_next = [], False
        if index >= len(self.parts):
            row.done = True
            return
        part = self.parts[index]
        if isinstance(part, Span):
            row.words, row.sentence_words, row.partial, row.last, row.sentence_start = 0, 0, "", "", True
            row.prev_word, row.gap, row.theme_seen = "", "", False
            if part.opener:
                self._force(row, part.opener)
            else:
                self._maybe_force_theme(row, part)
        else:
            row.cue = ""
            names = self._cue_names(row, part)
            if len(names) == 1:
                self._force(row, names[0] + "\n", then_next=True)

    def _cue_names(self, row: _Row, part: Cue) -> list[str]:
        return [n for n in part.names if n != row.speaker] or list(part.names)

    def _force(self, row: _Row, text: str, then_next: bool = False) -> None:
        row.queue = self._encode(text)
        row.then_next = then_next
        if not row.queue and then_next:
            self._enter(row, row.part + 1)

    def _maybe_force_theme(self, row: _Row, span: Span) -> None:
        """At a word's start: write the theme phrase now if the span's theme rule says so."""
        if row.queue or row.partial or row.last not in ("", " ") or row.theme_seen:
            return
        if span.theme == "force" and self.theme_phrase:
            phrase = self.theme_phrase
            if not _article_fits(row.prev_word, phrase):
                return
            determiner = row.prev_word in DETERMINERS and row.gap == " "
            after_determiner = determiner and not row.sentence_start
            if after_determiner and row.words >= span.theme_from:
                pass
            elif row.words >= span.theme_by and not determiner:
                phrase = "the " + phrase
            elif row.words >= span.theme_by:
                pass
            else:
                return
        elif span.theme == "offer" and self.offer_word and not row.offered:
            if not (row.prev_word in DETERMINERS and row.gap == " " and not row.sentence_start
                    and row.words >= span.theme_from):
                return
            phrase = self.offer_word
            if not _article_fits(row.prev_word, phrase):
                return
            row.offered = True
        else:
            return
        if row.sentence_start:
            phrase = phrase[:1].upper() + phrase[1:]
        row.theme_seen = True
        row.lock = phrase.split()[-1].lower()
        self._force(row, phrase)

    def _advance(self, row: _Row, token_id: int) -> None:
        if row.done:
            return
        piece = self.pieces[token_id] if 0 <= token_id < len(self.pieces) else ""
        forced = bool(row.queue)
        if forced:
            row.queue.pop(0)
        part = self.parts[row.part]
        if isinstance(part, Span) and not (forced and row.then_next):
            self._read_span(row, part, piece)
        elif isinstance(part, Cue) and not forced:
            row.cue += piece
            if row.cue in self._cue_names(row, part):
                row.speaker = row.cue
                self._force(row, "\n", then_next=True)
                return
        if forced and not row.queue and row.then_next:
            if isinstance(part, Cue):
                row.speaker = row.speaker if row.cue else self._cue_names(row, part)[0]
            self._enter(row, row.part + 1)

    def _read_span(self, row: _Row, span: Span, piece: str) -> None:
        if piece in self.letter_chars:
            row.partial += piece
        else:
            if row.partial:
                word = row.partial.lower().replace("’", "'")
                row.words += 1
                row.sentence_words += 1
                row.prev_word = word
                row.sentence_start = False
                if word in self.theme_forms:
                    row.theme_seen = True
                row.partial = ""
                row.gap = ""
                if not row.queue:  # inside a forced phrase the lock waits for its last word
                    row.lock = ""
            row.gap += piece
            if piece in SENTENCE_ENDS:
                row.sentence_start = True
                row.sentence_words = 0
                theme_ok = row.theme_seen or span.theme != "force" or not self.theme_phrase
                if row.words >= span.min_words and theme_ok:
                    self._force(row, span.after, then_next=True)
                    row.last = piece
                    return
        row.last = piece
        if piece == " ":
            self._maybe_force_theme(row, span)

    # -- masks ----------------------------------------------------------------------------------
    def _span_allowed(self, row: _Row, span: Span):
        partial, last = row.partial, row.last
        if partial:
            mode = "cap" if (partial[0].isupper() and not row.sentence_start) else "inner"
            letters = self._letter_mask(partial, mode)
            if row.lock:
                letters = letters & self._lock_mask(partial, row.lock)
            if not self._is_word(partial):
                return letters
            over = row.words + 1 >= span.max_words
            enders = self._mask(span.enders)
            if over and partial.lower() not in DANGLING:
                return enders
            if row.words == 0 and span.plain_start:
                return letters | self.space
            allowed = letters | self.space
            if row.sentence_words + 1 >= span.sentence_words:
                allowed = allowed | enders
            if not over:
                allowed = allowed | self.clause
            return allowed
        if last in ("", " "):
            return self._letter_mask("", "sentence" if row.sentence_start else "inner")
        return self.space  # after a punctuation mark

    def _lock_mask(self, partial: str, lock: str):
        key = (partial, "lock:" + lock)
        cached = self._letter_cache.get(key)
        if cached is None:
            import torch

            cached = torch.zeros_like(self.eos)
            low = partial.lower()
            for i, letter in self.letters:
                if any(v.startswith(low + letter.lower()) for v in word_variants(lock)):
                    cached[i] = True
            self._letter_cache[key] = cached
        return cached

    def _allowed(self, row: _Row):
        import torch

        if row.done:
            return self.eos
        if row.queue:
            m = torch.zeros_like(self.eos)
            m[row.queue[0]] = True
            return m
        part = self.parts[row.part]
        if isinstance(part, Cue):
            m = torch.zeros_like(self.eos)
            for name in self._cue_names(row, part):
                if name.startswith(row.cue) and len(name) > len(row.cue) and name[len(row.cue)] in self.ids:
                    m[self.ids[name[len(row.cue)]]] = True
            return m
        return self._span_allowed(row, part)

    def __call__(self, generated, logits):
        finite = logits > float("-inf")
        for index, row in enumerate(self.tracker.sync(generated)):
            allowed = self._allowed(row) & finite[index]
            if not bool(allowed.any()):
                continue
            logits[index].masked_fill_(~allowed, float("-inf"))
            part = self.parts[row.part] if not row.done and row.part < len(self.parts) else None
            if isinstance(part, Span) and not row.queue and row.partial and row.words + 1 >= part.min_words:
                # Past the minimum: more and more inclined to end the sentence.
                bonus = min(4.0, 0.5 * (row.words + 2 - part.min_words))
                for tid in self.end_ids:
                    if bool(allowed[tid]):
                        logits[index, tid] += bonus
        return logits


# --------------------------------------------------------------------------------------------------
# Screenplay


def theme_phrase(request: FormRequest) -> str:
    """The words forced into a text that has not named its theme: the theme as written, from its first
    content word to its last (``harbour at dawn``, ``clockmaker's daughter``), when that is at most four
    words; else its last content word."""
    words = theme_words(request)
    if not words:
        return ""
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)*", (request.theme or "").lower().replace("’", "'"))
    stems = [t[:-2] if t.endswith("'s") else t for t in tokens]
    content = [i for i, t in enumerate(stems) if t in words]
    if content:
        start = content[0]
        while start > 0 and tokens[start - 1] not in DETERMINERS | LINKING_WORDS and content[-1] - start < 3:
            start -= 1  # the words that qualify it: the OLD road, FIRST snow
        if content[-1] - start < 4:
            return " ".join(tokens[start: content[-1] + 1])
    return words[-1]


def screenplay_parts(request: FormRequest) -> list[Span | Cue]:
    names = tuple(cast(request))
    parts: list[Span | Cue] = [Span(min_words=14, max_words=50, theme="force", theme_from=2, theme_by=8,
                                        plain_start=True, opener="The ", enders=".", sentence_words=4)]
    for i in range(_exchanges(request)):
        last = i == _exchanges(request) - 1
        parts += [Cue(names), Span(min_words=5, max_words=32, after="" if last else "\n\n",
                                   theme="offer", theme_from=1)]
    return parts


def screenplay_processors(tokenizer, request: FormRequest) -> list:
    from synesthesia_poetry.constraints import is_char_level

    if not is_char_level(tokenizer):
        return []
    words = theme_words(request)
    return [ProseProcessor(tokenizer, screenplay_parts(request), theme_phrase=theme_phrase(request),
                           theme_words=words, offer_word=words[-1] if words else "")]


def screenplay_conditioning(request: FormRequest) -> Conditioning:
    keywords = planning_words(request)[:4] or [w for w in re.split(r"[\s,;]+", request.theme.strip()) if w]
    return Conditioning(form="screenplay", keywords=keywords, language="en", prefix=scene_heading(request) + "\n\n")


def validate_screenplay(text: str, request: FormRequest | None = None) -> Validation:
    from synesthesia_poetry.forms import fountain_elements

    elements = fountain_elements(text)
    kinds = [k for k, _ in elements]
    problems = []
    if "scene_heading" not in kinds:
        problems.append("no scene heading (INT. PLACE - DAY)")
    elif kinds[0] != "scene_heading":
        problems.append("the scene does not begin with its heading")
    if "character" not in kinds or "dialogue" not in kinds:
        problems.append("no character cue followed by dialogue")
    if "action" not in kinds:
        problems.append("no action line")
    ok = not problems
    score = (("scene_heading" in kinds) + ("character" in kinds) + ("dialogue" in kinds) + ("action" in kinds)) / 4
    body = "\n".join(t for k, t in elements if k in ("action", "dialogue"))
    off_theme = _theme_problem(body, request)
    if off_theme:
        problems.append(off_theme)
        score *= THEME_MISS_FACTOR
    return Validation(ok=ok, score=round(score, 4), problems=problems)


def finalize_screenplay(text: str) -> str:
    """Trim a generation cut off by the token budget: an unfinished last speech back to its last full
    sentence, a cue left without a speech dropped."""
    from synesthesia_poetry.forms import is_character_cue

    blocks = [b.strip("\n") for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    while blocks:
        lines = blocks[-1].splitlines()
        if len(lines) == 1 and is_character_cue(lines[0]) and len(blocks) > 1:
            blocks.pop()
            continue
        if len(lines) >= 2 and is_character_cue(lines[0]) and not SENTENCE_END_AT_END.search(lines[-1]):
            cut = finalize_story(lines[-1])
            if SENTENCE_END_AT_END.search(cut):
                blocks[-1] = "\n".join(lines[:-1] + [cut])
            elif len(lines) > 2:
                blocks[-1] = "\n".join(lines[:-1])
            else:
                blocks.pop()
                continue
        break
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------------------------------
# Story

SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)]*")
SENTENCE_END_AT_END = re.compile(r"[.!?…。！？][\"'”’)]*\s*$")


def finalize_story(text: str) -> str:
    text = text.strip()
    ends = list(SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


def validate_story(text: str, request: FormRequest | None = None) -> Validation:
    min_words = _min_words(request)
    n_words = len(re.findall(r"\w+", text))
    problems = []
    if n_words < min_words:
        problems.append(f"{n_words} words; a story fragment has at least {min_words}")
    if not SENTENCE_END.search(text.strip()[-3:] or " "):
        problems.append("the fragment stops mid-sentence")
    ok = not problems
    score = min(1.0, n_words / min_words) * (0.5 + 0.5 * ok)
    off_theme = _theme_problem(text, request)
    if off_theme:
        problems.append(off_theme)
        score *= THEME_MISS_FACTOR
    return Validation(ok=ok, score=round(score, 4), problems=problems)


def story_processors(tokenizer, request: FormRequest) -> list:
    from synesthesia_poetry.constraints import is_char_level

    if not is_char_level(tokenizer):
        return []
    min_words = _min_words(request)
    words = theme_words(request)
    span = Span(min_words=min_words, max_words=max(min_words + 40, 2 * min_words), after="", theme="force",
                theme_from=3, theme_by=min(14, max(3, min_words - 2)), plain_start=True,
                opener="The ", enders=".", sentence_words=5)
    return [ProseProcessor(tokenizer, [span], theme_phrase=theme_phrase(request), theme_words=words)]


def story_conditioning(request: FormRequest) -> Conditioning:
    keywords = planning_words(request)[:4] or [w for w in re.split(r"[\s,;]+", request.theme.strip()) if w]
    return Conditioning(form="story", keywords=keywords, language="en", prefix=str(request.options.get("prefix", "")))


# --------------------------------------------------------------------------------------------------
# The forms


def screenplay_form() -> Form:
    return Form(name="screenplay", description="A screenplay scene in Fountain on the theme: heading, action, "
                                               "cues, dialogue (form_options: heading, cast, exchanges)",
                language="en", conditioning=screenplay_conditioning, validate=validate_screenplay,
                logits_processors=screenplay_processors, finalize=finalize_screenplay, max_new_tokens=1200)


def story_form() -> Form:
    return Form(name="story", description="A story fragment in prose on the theme, ending on a full sentence "
                                          "(form_options.min_words, default 40)",
                language="en", conditioning=story_conditioning, validate=validate_story,
                logits_processors=story_processors, finalize=finalize_story, max_new_tokens=700)
