"""Training corpora: read text files, folders and JSONL into documents, pack them into one token stream.

Sources (``data.paths``):

- ``*.jsonl``: one JSON object per line, ``{"text": ..., "form": ..., "keywords": [...], "language": ...}``;
  only ``text`` is required. ``keywords`` may also be one space-separated string.
- any other file: plain UTF-8 text, cut into documents by ``split``: ``file`` (the whole file),
  ``paragraph`` (blank-line separated, the default) or ``line``.
- a folder: every ``*.txt``, ``*.md`` and ``*.jsonl`` file below it, in sorted order.

Packing: every document becomes ``<bos>[<lang:xx>][<form:NAME>][<kw>k1 k2</kw>]<sep>text<eos>`` and the
documents are concatenated into one 1-D token tensor, which is tokenized once before training.

Train/validation split: like nanoGPT, the last ``val_fraction`` of the token stream is held out, with
the cut moved forward to the next document start so no document is split across the two.

Training windows (``block_size + 1`` tokens) start either at random positions (``random``, right for a
long continuous text) or at document starts (``boundary``, right for short labelled records: every
window then begins with ``<bos>`` and its control tokens, the way a conditioned prompt does at
generation time, and later documents in the window are seen whole too). ``auto`` picks ``boundary``
when documents are short (median under ``block_size``) and ``random`` otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from synesthesia.errors import ConfigError, CorpusError

if TYPE_CHECKING:  # torch is imported lazily
    import torch

TEXT_SUFFIXES = (".txt", ".md", ".text")
JSONL_SUFFIXES = (".jsonl",)
SPLITS = ("file", "paragraph", "line")
WINDOW_STARTS = ("auto", "boundary", "random")


@dataclass
class Document:
    text: str
    form: str | None = None
    keywords: list[str] = field(default_factory=list)
    language: str | None = None
    source: str = ""


# --------------------------------------------------------------------------------------------------
# Reading


def load_documents(
    paths: Sequence[str | Path],
    split: str = "paragraph",
    language: str | None = None,
    encoding: str = "utf-8",
) -> list[Document]:
    """Read every source into documents. ``language`` labels documents that carry none of their own."""
    if split not in SPLITS:
        raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not paths:
        raise CorpusError("no corpus given; set data.paths=[corpus.txt] (files, folders or JSONL)")
    documents: list[Document] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise CorpusError(f"{path}: corpus file or folder not found")
        files = _corpus_files(path)
        found = []
        for file in files:
            found.extend(_read_file(file, split, encoding))
        if not found:
            what = "folder has no non-empty .txt/.md/.jsonl file" if path.is_dir() else "file has no text"
            raise CorpusError(f"{path}: empty corpus ({what}); give a file with text in it")
        documents.extend(found)
    if language:
        for doc in documents:
            doc.language = doc.language or language
    return documents


def _corpus_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _read_file(path: Path, split: str, encoding: str) -> list[Document]:
    try:
        content = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); "
                          "convert it to UTF-8") from None
    except OSError as exc:
        raise CorpusError(f"{path}: unreadable ({exc.strerror})") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _read_jsonl(path, content)
    content = content.replace("\r\n", "\n").lstrip("\ufeff")
    if split == "file":
        pieces = [content.strip("\n")]
    elif split == "paragraph":
        pieces = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", content)]
    else:
        pieces = content.split("\n")
    return [Document(text=p, source=str(path)) for p in pieces if p.strip()]


def read_jsonl_record(line: str, where: str) -> dict | None:
    """One line of a JSONL corpus -> {"text", "form", "keywords", "language"}, or None for a blank line. A line
    that is not such a record is one CorpusError naming ``where`` (FILE:LINE). The one check of the format, for
    training (``load_documents``) and for ``synesthesia corpus prepare``."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise CorpusError(f'{where}: each record needs a "text" string, e.g. {{"text": "...", "form": "七绝"}}')
    keywords = record.get("keywords") or []
    if isinstance(keywords, str):
        keywords = keywords.split()
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise CorpusError(f'{where}: "keywords" must be a list of strings or one space-separated string')
    for key in ("form", "language"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise CorpusError(f'{where}: "{key}" must be a string')
    return {"text": record["text"], "form": record.get("form") or None,
            "keywords": [k for k in keywords if k.strip()], "language": record.get("language") or None}


def _read_jsonl(path: Path, content: str) -> list[Document]:
    documents = []
    for number, line in enumerate(content.splitlines(), start=1):
        where = f"{path}:{number}"
        record = read_jsonl_record(line, where)
        if record is not None and record["text"].strip():
            documents.append(Document(text=record["text"], form=record["form"], keywords=record["keywords"],
                                      language=record["language"], source=where))
    return documents


def labels(documents: Sequence[Document]) -> tuple[list[str], list[str]]:
    """The languages and forms the documents are labelled with (for the control tokens)."""
    languages = sorted({d.language for d in documents if d.language})
    forms = sorted({d.form for d in documents if d.form})
    return languages, forms


def tokenizer_texts(documents: Sequence[Document]):
    """What a tokenizer is trained on: every text and every keyword block."""
    for doc in documents:
        yield doc.text
        if doc.keywords:
            yield " ".join(doc.keywords)


# --------------------------------------------------------------------------------------------------
# Packing and sampling


@dataclass
class PackedCorpus:
    """The token stream (LongTensor [N]) and where each document starts in it (LongTensor [D])."""

    tokens: torch.Tensor
    starts: torch.Tensor
    median_document_length: int

    def __len__(self) -> int:
        return int(self.tokens.numel())

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.tokens.numpy().tobytes()).hexdigest()[:16]


def pack_documents(documents: Sequence[Document], tokenizer) -> PackedCorpus:
    """``<bos>controls<sep>text<eos>`` for every document, concatenated."""
    import torch

    stream: list[int] = []
    starts: list[int] = []
    lengths: list[int] = []
    for doc in documents:
        ids = tokenizer.encode_document(doc.text, doc.language, doc.form, doc.keywords)
        starts.append(len(stream))
        lengths.append(len(ids))
        stream.extend(ids)
    lengths.sort()
    return PackedCorpus(
        tokens=torch.tensor(stream, dtype=torch.long),
        starts=torch.tensor(starts, dtype=torch.long),
        median_document_length=lengths[len(lengths) // 2] if lengths else 0,
    )


def split_train_val(corpus: PackedCorpus, val_fraction: float) -> tuple[PackedCorpus, PackedCorpus | None]:
    """Hold out the last ``val_fraction`` of the tokens, cut at the next document start where there is one."""
    n = len(corpus)
    if val_fraction <= 0:
        return corpus, None
    cut = int(n * (1.0 - val_fraction))
    later = corpus.starts[corpus.starts >= cut]
    if len(later) and int(later[0]) < n - 1:
        cut = int(later[0])
    train = PackedCorpus(corpus.tokens[:cut], corpus.starts[corpus.starts < cut], corpus.median_document_length)
    val_starts = corpus.starts[corpus.starts >= cut] - cut
    val = PackedCorpus(corpus.tokens[cut:], val_starts, corpus.median_document_length)
    return train, (val if len(val) >= 2 else None)


class WindowSampler:
    """Draws batches of (x, y) windows [B, T] from a packed corpus, from its own seeded generator
    (with ``shard=(rank, processes)``, this process's [B / processes, T] rows of each batch).

    The generator's state is the whole "data position", so saving and restoring it makes a resumed
    run draw exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(self, corpus: PackedCorpus, block_size: int, batch_size: int, mode: str,
                 seed: int, device: str = "cpu", shard: tuple[int, int] = (0, 1)):
        import torch

        self.block_size = min(block_size, len(corpus) - 1)
        if self.block_size < 1:
            raise CorpusError("corpus split has fewer than 2 tokens; add text or lower data.val_fraction")
        self.batch_size = batch_size
        # (rank, processes): every process draws the same global batch and keeps its own contiguous rows.
        self.rank, self.processes = shard
        self.device = device
        self.tokens = corpus.tokens.to(device)
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(self.block_size + 1, device=device)
        last_start = len(corpus) - self.block_size - 1  # a window needs block_size + 1 tokens
        if mode == "auto":
            mode = "boundary" if corpus.median_document_length < block_size else "random"
        boundary = corpus.starts[corpus.starts <= last_start]
        # Too few documents fit (e.g. one long text): boundary windows would repeat; use random ones.
        self.mode = "boundary" if mode == "boundary" and len(boundary) > 0 else "random"
        self._starts = boundary
        self._last_start = last_start

    def batch(self):
        import torch

        if self.mode == "boundary":
            pick = torch.randint(len(self._starts), (self.batch_size,), generator=self.generator)
            ix = self._starts[pick]
        else:
            ix = torch.randint(self._last_start + 1, (self.batch_size,), generator=self.generator)
        ix = ix.chunk(self.processes)[self.rank]  # [B / processes]
        window = self.tokens[ix.to(self.device)[:, None] + self._offsets]  # [B, T+1]
        return window[:, :-1], window[:, 1:]

    def get_state(self):
        return self.generator.get_state()

    def set_state(self, state) -> None:
        self.generator.set_state(state)
