"""The things plugins contribute: generators, forms, renderers, and the artwork they are handed.

These are plain dataclasses and protocols with no heavy imports, so that plugin discovery stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from synesthesia.config import GenerationConfig

# --------------------------------------------------------------------------------------------------
# Decoding constraints


@runtime_checkable
class LogitsProcessor(Protocol):
    """Changes next-token scores during decoding; how forms constrain what the model may write.

    ``generated`` is a LongTensor [B, T] of the tokens generated so far for each candidate (the prompt
    excluded; T may be 0). ``logits`` is a FloatTensor [B, V] of next-token scores. Return the changed
    logits (in place is fine); set a score to ``-inf`` to forbid a token.
    """

    def __call__(self, generated, logits): ...


@runtime_checkable
class Tokenizer(Protocol):
    """What a form's logits processors may ask of a generator's tokenizer (``make_logits_processors``
    and ``Form.logits_processors`` receive one). Both of our tokenizers (``synesthesia.tokenizer``) satisfy
    it; so must a plugin generator's, if forms are to constrain it.

    - ``vocab_size``: the number of token ids; logits rows are [V] with V == vocab_size.
    - ``eos_id``: the id that ends a candidate (forbid it to keep writing, force it to stop).
    - ``kind``: ``"char"`` (one token per character: letter- and syllable-level constraints work) or
      ``"bpe"`` (tokens span letters: constrain lines, check syllables after).
    - ``decode(ids) -> str``: the text of ids (special tokens dropped), e.g. to find line breaks in BPE tokens.
    - ``id_to_piece(id) -> str``: one token's text (``"a"``, ``"\n"``, ``" the"``; special tokens as
      ``"<eos>"``); masks over the vocabulary are built from it (see ``synesthesia.forms``).
    """

    kind: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def id_to_piece(self, token_id: int) -> str: ...


@dataclass
class Conditioning:
    """What a form asks of the model: control tokens and a text prefix.

    ``form`` and ``keywords`` become control tokens when the model was trained with them (see
    ``synesthesia.tokenizer.format_conditioned``); a model without them falls back to plain text.
    """

    form: str | None = None
    keywords: list[str] = field(default_factory=list)
    language: str | None = None  # "zh", "en", or None for any
    prefix: str = ""  # text the poem starts with (e.g. a title, an acrostic's first character)
    # A form the model may know that this one writes like (a tanka like a haiku): the model's primer for
    # that form (a speaker's cue for a drama-trained model, ``synesthesia.forms.primer_text``) applies too.
    like: str | None = None


@dataclass
class Validation:
    """A validator's verdict: ``ok`` if the text obeys the form; ``score`` in [0, 1] ranks candidates."""

    ok: bool
    score: float
    problems: list[str] = field(default_factory=list)


@dataclass
class FormRequest:
    """What the artist asked for, handed to a form's recipe."""

    theme: str = ""
    prompt: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # The theme understood (``synesthesia.theme.understand_theme``), filled by the pipeline: the theme's
    # own words first, then related imagery, in the order a form should place them; empty without a theme.
    keywords: list[str] = field(default_factory=list)


@dataclass
class Form:
    """A writing form: how to ask for it, how to constrain decoding, how to check the result.

    - ``conditioning(request) -> Conditioning``: the prompt recipe.
    - ``logits_processors(tokenizer, request) -> list[LogitsProcessor]``: optional decoding constraints.
    - ``validate(text, request) -> Validation``: whether a text obeys the form (and the request: an
      acrostic's letters, a stanza shape), with a score for ranking. ``request`` may be None when a text is
      checked on its own.
    - ``finalize(text) -> str``: optional clean-up of a raw generation (trim after the last line, ...).
    - ``max_new_tokens``: a sensible budget for one candidate.
    - ``plan(request)``: optional keyword plan, which theme keyword each line should hold.
    """

    name: str
    description: str
    language: str | None
    conditioning: Callable[[FormRequest], Conditioning]
    validate: Callable[[str, FormRequest | None], Validation]
    logits_processors: Callable[[Any, FormRequest], list[LogitsProcessor]] | None = None
    finalize: Callable[[str], str] | None = None
    aliases: Sequence[str] = ()
    max_new_tokens: int | None = None
    stop: Sequence[str] = ()
    # The keyword plan: which of ``request.keywords`` goes in which line, as [{"line": i, "keyword": k}]
    # (recorded in the manifest; a form's processors place them).
    plan: Callable[[FormRequest], list[dict[str, Any]]] | None = None


# --------------------------------------------------------------------------------------------------
# Generators


@dataclass
class SamplingSettings:
    """How to pick tokens; the fields of the ``generation`` config group, with its defaults (one source:
    ``synesthesia.config.GenerationConfig``)."""

    temperature: float = GenerationConfig.temperature
    top_k: int | None = GenerationConfig.top_k
    top_p: float | None = GenerationConfig.top_p
    min_p: float | None = GenerationConfig.min_p
    repetition_penalty: float = GenerationConfig.repetition_penalty
    # A concrete budget: a run's generation.max_new_tokens=0 means the form's own, else this.
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int = 0


@dataclass
class GenerationRequest:
    """One call to a generator: ``n`` candidates for one conditioning."""

    conditioning: Conditioning
    sampling: SamplingSettings
    n: int = 1
    logits_processors: list[LogitsProcessor] = field(default_factory=list)
    # Built lazily by the generator, since processors need its tokenizer.
    make_logits_processors: Callable[[Any], list[LogitsProcessor]] | None = None


@runtime_checkable
class Generator(Protocol):
    """A text backend. ``name`` is what ``model.generator=NAME`` selects."""

    name: str

    def load(self, model: str | None, device: str = "cpu", dtype: str = "float32") -> LoadedGenerator:
        """Load the named model (checkpoint name or folder) for inference in ``dtype`` ("float32",
        "bfloat16" or "int8"); raise SynesthesiaError if it can't."""
        ...


@runtime_checkable
class LoadedGenerator(Protocol):
    """A generator with its model in memory.

    Optional methods the pipeline uses when present: ``score(request, texts) -> list[float]`` (mean
    log-likelihood per token, to rank candidates) and ``describe_request(request) -> dict`` (what the model
    made of one request, e.g. the theme words it was conditioned on; merged into the manifest's ``model``).
    """

    def describe(self) -> dict[str, Any]:
        """For the manifest: model name, path, sha256 checksum, parameter count, tokenizer."""
        ...

    def generate(self, request: GenerationRequest) -> list[str]:
        """Return ``request.n`` candidate texts (the prompt excluded)."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield the text of one candidate piece by piece as it is decoded."""
        ...


# --------------------------------------------------------------------------------------------------
# Renderers and artworks


@dataclass
class RenderContext:
    """What a renderer is given.

    ``out_dir`` is the renderer's own folder inside the (staging) artwork folder; write every file
    there. ``options`` is the renderer's validated options model. ``manifest`` is the manifest so far
    (prompt, config, model, seed), e.g. to embed in a PNG text chunk.
    """

    text: str
    form: str
    language: str | None
    theme: str
    seed: int
    out_dir: Path
    options: Any
    manifest: dict[str, Any]
    title: str = ""
    model_name: str = ""


@dataclass
class Renderer:
    """Turns text into artifacts. ``render(context)`` returns the paths it wrote (inside ``out_dir``)."""

    name: str
    description: str
    options: type  # a pydantic BaseModel subclass; ``options()`` must give valid defaults
    render: Callable[[RenderContext], list[Path]]
    # Languages it applies to; None means any. A pipeline skips a renderer that does not apply.
    languages: Sequence[str] | None = None


@dataclass
class Artwork:
    """A finished artwork on disk, handed to ``artwork_created``."""

    path: Path  # the artwork folder: text.txt, manifest.json, one folder per renderer
    text: str
    manifest: dict[str, Any]
    files: list[Path]
