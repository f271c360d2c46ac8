"""Tokenizers: character-level with byte fallback, and byte-level BPE (HF ``tokenizers``).

Both share one vocabulary layout for the special tokens and the control tokens used for conditioning:

    <pad> <bos> <eos> <sep> <unk> <kw> </kw>      always present, ids 0..6 in this order
    <lang:xx> <form:NAME>                         added from the corpus's labels at training time

A conditioned prompt looks like ``<bos><lang:zh><form:七绝><kw>秋 月 雁</kw><sep>`` followed by the
text. Both tokenizers round-trip any Unicode: the char tokenizer spells characters it has never seen
as their UTF-8 bytes (``<0xE4>`` ...), the BPE tokenizer is byte-level throughout.

A tokenizer is saved as one JSON file, ``tokenizer.json``, next to the model weights.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from synesthesia.components import Conditioning
from synesthesia.errors import CheckpointError
from synesthesia.fileio import read_json, write_atomic

TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1

PAD, BOS, EOS, SEP, UNK, KW_OPEN, KW_CLOSE = "<pad>", "<bos>", "<eos>", "<sep>", "<unk>", "<kw>", "</kw>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, SEP, UNK, KW_OPEN, KW_CLOSE)


def lang_token(language: str) -> str:
    return f"<lang:{language}>"


def form_token(form: str) -> str:
    return f"<form:{form}>"


def control_tokens_for(languages: Iterable[str] = (), forms: Iterable[str] = ()) -> list[str]:
    """The control tokens for the given labels, sorted so that training is deterministic."""
    return [lang_token(x) for x in sorted(set(languages))] + [form_token(x) for x in sorted(set(forms))]


def format_conditioned(conditioning: Conditioning) -> str:
    """The conditioned prompt as readable text (for logs and manifests), e.g. ``<bos><lang:zh><sep>秋``."""
    parts = [BOS]
    if conditioning.language:
        parts.append(lang_token(conditioning.language))
    if conditioning.form:
        parts.append(form_token(conditioning.form))
    if conditioning.keywords:
        parts.append(KW_OPEN + " ".join(conditioning.keywords) + KW_CLOSE)
    parts.append(SEP)
    return "".join(parts) + conditioning.prefix


def _byte_piece(value: int) -> str:
    return f"<0x{value:02X}>"


class _TokenizerBase:
    """What both tokenizers share: special-token ids and conditioned encoding."""

    kind: str

    # Subclasses provide these.
    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def token_id(self, token: str) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def pad_id(self) -> int:
        return self._special_id(PAD)

    @property
    def bos_id(self) -> int:
        return self._special_id(BOS)

    @property
    def eos_id(self) -> int:
        return self._special_id(EOS)

    @property
    def sep_id(self) -> int:
        return self._special_id(SEP)

    def _special_id(self, token: str) -> int:
        token_id = self.token_id(token)
        if token_id is None:  # only a hand-edited tokenizer file can get here
            raise CheckpointError(f"{TOKENIZER_FILE}: special token {token} is missing; retrain the tokenizer")
        return token_id

    @property
    def languages(self) -> list[str]:
        """Languages this tokenizer has a ``<lang:xx>`` control token for."""
        return [t[len("<lang:") : -1] for t in self.control_tokens if t.startswith("<lang:")]

    @property
    def forms(self) -> list[str]:
        """Forms this tokenizer has a ``<form:NAME>`` control token for."""
        return [t[len("<form:") : -1] for t in self.control_tokens if t.startswith("<form:")]

    @property
    def control_tokens(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_controls(
        self, language: str | None = None, form: str | None = None, keywords: Sequence[str] = ()
    ) -> list[int]:
        """``<bos>[<lang:xx>][<form:NAME>][<kw>k1 k2</kw>]<sep>``; control tokens we lack are left out."""
        ids = [self.bos_id]
        for token in ([lang_token(language)] if language else []) + ([form_token(form)] if form else []):
            token_id = self.token_id(token)
            if token_id is not None:
                ids.append(token_id)
        if keywords:
            ids.append(self._special_id(KW_OPEN))
            ids.extend(self.encode(" ".join(keywords)))
            ids.append(self._special_id(KW_CLOSE))
        ids.append(self.sep_id)
        return ids

    def encode_conditioned(self, conditioning: Conditioning) -> list[int]:
        """The prompt for a conditioning: control tokens, ``<sep>``, then the encoded prefix."""
        ids = self.encode_controls(conditioning.language, conditioning.form, conditioning.keywords)
        return ids + (self.encode(conditioning.prefix) if conditioning.prefix else [])

    def encode_document(
        self, text: str, language: str | None = None, form: str | None = None, keywords: Sequence[str] = ()
    ) -> list[int]:
        """A training document: ``<bos>controls<sep>text<eos>``."""
        return self.encode_controls(language, form, keywords) + self.encode(text) + [self.eos_id]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` into ``directory`` atomically; return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        payload = json.dumps(self._to_json(), ensure_ascii=False, indent=1)
        write_atomic(path, payload)
        return path

    def _to_json(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, controls={len(self.control_tokens)})"


class CharTokenizer(_TokenizerBase):
    """One token per character, with UTF-8 byte fallback for characters outside the vocabulary.

    Vocabulary order: special tokens, control tokens, the 256 byte tokens ``<0x00>..<0xFF>``, then
    the characters (most frequent first). Text passed to ``encode`` is never parsed for special
    tokens: a poem that contains ``<eos>`` is spelled character by character.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], control_tokens: Sequence[str] = ()):
        for c in chars:
            if len(c) != 1:
                raise ValueError(f"CharTokenizer characters must be single characters, got {c!r}")
        self._controls = list(dict.fromkeys(control_tokens))
        self._pieces: list[str] = list(SPECIAL_TOKENS) + self._controls
        self._byte_offset = len(self._pieces)
        self._pieces += [_byte_piece(b) for b in range(256)]
        self._char_offset = len(self._pieces)
        self._pieces += list(dict.fromkeys(chars))
        self._special_and_control = {t: i for i, t in enumerate(self._pieces[: self._byte_offset])}
        self._char_to_id = {c: i + self._char_offset for i, c in enumerate(self._pieces[self._char_offset :])}

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        control_tokens: Sequence[str] = (),
        min_frequency: int = 1,
        max_chars: int | None = None,
    ) -> CharTokenizer:
        """Build the vocabulary from texts; rarer characters than ``min_frequency`` use byte fallback."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        # Ties broken by code point so that the same corpus always gives the same vocabulary.
        ranked = sorted((c for c, n in counts.items() if n >= min_frequency), key=lambda c: (-counts[c], c))
        if max_chars is not None:
            ranked = ranked[:max_chars]
        return cls(ranked, control_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def control_tokens(self) -> list[str]:
        return list(self._controls)

    @property
    def chars(self) -> list[str]:
        return self._pieces[self._char_offset :]

    def token_id(self, token: str) -> int | None:
        found = self._special_and_control.get(token)
        if found is None and len(token) == 1:
            found = self._char_to_id.get(token)
        if found is None and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            try:
                found = self._byte_offset + int(token[3:5], 16)
            except ValueError:
                found = None
        return found

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        lookup = self._char_to_id
        for ch in text:
            token_id = lookup.get(ch)
            if token_id is not None:
                ids.append(token_id)
            else:
                ids.extend(self._byte_offset + b for b in ch.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; special and control tokens are dropped, byte runs decoded as UTF-8."""
        out: list[str] = []
        pending = bytearray()
        for token_id in ids:
            token_id = int(token_id)
            if self._byte_offset <= token_id < self._char_offset:
                pending.append(token_id - self._byte_offset)
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            if token_id >= self._char_offset and token_id < len(self._pieces):
                out.append(self._pieces[token_id])
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def id_to_piece(self, token_id: int) -> str:
        return self._pieces[int(token_id)]

    def _to_json(self) -> dict:
        return {
            "type": self.kind,
            "version": FORMAT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "control_tokens": self._controls,
            "chars": self.chars,
        }

    @classmethod
    def _from_json(cls, data: dict, path: Path) -> CharTokenizer:
        if data.get("special_tokens") != list(SPECIAL_TOKENS):
            raise CheckpointError(f"{path}: unexpected special tokens; this tokenizer was not made by synesthesia")
        try:
            return cls(data["chars"], data.get("control_tokens", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad char tokenizer ({exc}); retrain or re-download it") from None


class BPETokenizer(_TokenizerBase):
    """Byte-level BPE from HF ``tokenizers``: every string round-trips, specials are atomic tokens."""

    kind = "bpe"

    def __init__(self, hf_tokenizer, control_tokens: Sequence[str] = ()):
        self._tok = hf_tokenizer
        # Text is never parsed for special tokens, as with CharTokenizer: a literal "<eos>" is just text.
        self._tok.encode_special_tokens = True
        self._controls = list(dict.fromkeys(control_tokens))
        self._special_ids = {
            self._tok.token_to_id(t) for t in list(SPECIAL_TOKENS) + self._controls
        } - {None}

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        control_tokens: Sequence[str] = (),
        min_frequency: int = 2,
    ) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        controls = list(dict.fromkeys(control_tokens))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS) + controls,
            # All 256 bytes are in the vocabulary, so no text ever needs <unk>.
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, controls)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def control_tokens(self) -> list[str]:
        return list(self._controls)

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_piece(self, token_id: int) -> str:
        """The token as text where it is whole UTF-8 (``' the'``), else its byte-level spelling."""
        token_id = int(token_id)
        if token_id in self._special_ids:
            return self._tok.id_to_token(token_id)
        text = self._tok.decode([token_id], skip_special_tokens=False)
        return text if "\ufffd" not in text else self._tok.id_to_token(token_id)

    def _to_json(self) -> dict:
        return {
            "type": self.kind,
            "version": FORMAT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "control_tokens": self._controls,
            "hf_tokenizer": json.loads(self._tok.to_str()),
        }

    @classmethod
    def _from_json(cls, data: dict, path: Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(json.dumps(data["hf_tokenizer"]))
        except Exception as exc:  # the HF parser raises its own Exception types
            raise CheckpointError(f"{path}: bad BPE tokenizer ({exc}); retrain or re-download it") from None
        missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
        if missing:
            raise CheckpointError(f"{path}: BPE tokenizer lacks special tokens {missing}; retrain it")
        return cls(tok, data.get("control_tokens", []))


Tokenizer = CharTokenizer | BPETokenizer


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a folder holding ``tokenizer.json`` (or from the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: tokenizer file not found; the checkpoint folder must contain {TOKENIZER_FILE}")
    data = read_json(path, CheckpointError, "re-save or re-download it", what="tokenizer JSON")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: tokenizer JSON is not an object; re-save or re-download it")
    kind = data.get("type")
    if kind == CharTokenizer.kind:
        return CharTokenizer._from_json(data, path)
    if kind == BPETokenizer.kind:
        return BPETokenizer._from_json(data, path)
    raise CheckpointError(f"{path}: unknown tokenizer type {kind!r} (expected 'char' or 'bpe')")


def train_tokenizer(
    kind: str,
    texts: Sequence[str],
    control_tokens: Sequence[str] = (),
    vocab_size: int = 8000,
    min_frequency: int = 1,
) -> Tokenizer:
    """Train a tokenizer of ``kind`` ('char' or 'bpe') on texts."""
    if kind == "char":
        return CharTokenizer.train(texts, control_tokens, min_frequency=min_frequency)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size=vocab_size, control_tokens=control_tokens,
                                  min_frequency=max(min_frequency, 2))
    raise ValueError(f"unknown tokenizer kind {kind!r}; use 'char' or 'bpe'")
