"""Corpus preparation: turn a poetry collection, a text file or an artist's own folder into a training set.

    synesthesia corpus prepare SOURCE --out DIR

SOURCE is one of

- the npm package ``chinese-poetry``: SOURCE ``chinese-poetry`` finds ``./node_modules/chinese-poetry`` (after
  ``npm install chinese-poetry``), else fetches it once with npm into ``~/.cache/synesthesia/`` (85 MB); or
  point at an unpacked copy, its ``dist/`` or ``dist/quantangshi/``: the Tang poems ``poet.tang.*.json`` (or
  the Song poems with ``dynasty="song"``), classified by form from line count × line length;
- a plain text file (``tinyshakespeare.txt``, a Debian ``fortunes`` file whose entries are separated by
  ``%`` lines, a collection of your poems separated by blank lines);
- a folder of ``.txt``, ``.md`` and ``.jsonl`` files (the personalisation path; ``.jsonl`` lines are
  objects with at least ``"text"``, optionally ``"form"``, ``"keywords"``, ``"language"``).

DIR receives

    train.jsonl      one record per line: {"text", "form", "keywords", "language"}
    val.jsonl        the held-out records, same format
    keywords.json    the keyword vocabulary with document counts (ship it beside a model's weights)
    manifest.json    source, options, counts per form and split, characters, the keyword settings

Classical poems are written one couplet per line with the full-width comma and full stop
(``床前明月光，疑是地上霜。``), in the characters of the source (traditional for chinese-poetry, which the
rhyme and tone tables want); ``simplified=True`` converts them. Every file is written to a temporary
name and renamed into place, so an interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synesthesia.data import read_jsonl_record
from synesthesia.errors import CorpusError
from synesthesia.fileio import atomic_open
from synesthesia.keywords import KEYWORDS_FILE, KeywordExtractor, is_han, language_of

TRAIN_FILE = "train.jsonl"
VAL_FILE = "val.jsonl"
MANIFEST_FILE = "manifest.json"
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)

# Regulated forms by (number of lines, characters per line).
CLASSICAL_FORMS: dict[tuple[int, int], str] = {(4, 5): "五绝", (4, 7): "七绝", (8, 5): "五律", (8, 7): "七律"}
OTHER_CLASSICAL_FORM = "古诗"  # everything else that is still well-formed verse

_LINE_BREAK = re.compile(r"[，。！？；：、,.!?;:]")
_EDITORIAL_NOTE = re.compile(r"（[^）]*）|\([^)]*\)|〔[^〕]*〕|\[[^\]]*\]|【[^】]*】|｛[^｝]*｝|\{[^}]*\}|《[^》]*》")


@dataclass
class Record:
    """One training text with its conditioning labels."""

    text: str
    language: str
    form: str | None = None
    keywords: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"text": self.text, "form": self.form, "keywords": self.keywords, "language": self.language}


# --------------------------------------------------------------------------------------------------
# Classical Chinese


def poem_lines(paragraphs: Sequence[str]) -> list[str] | None:
    """The verse lines of a poem, punctuation removed; None when the text is not clean verse.

    Editorial notes in brackets (``（一作…）``) are dropped; a poem with lacunae (□) or other non-Han
    characters left over is rejected, since the model would learn to write them.
    """
    body = _EDITORIAL_NOTE.sub("", "".join(paragraphs))
    lines = [part.strip() for part in _LINE_BREAK.split(body)]
    lines = [line for line in lines if line]
    if not lines or not all(is_han(line) for line in lines):
        return None
    return lines


def classify_form(lines: Sequence[str]) -> str:
    """五绝 / 七绝 / 五律 / 七律 by line count × line length, else 古诗."""
    lengths = {len(line) for line in lines}
    if len(lengths) == 1:
        form = CLASSICAL_FORMS.get((len(lines), lengths.pop()))
        if form:
            return form
    return OTHER_CLASSICAL_FORM


def format_poem(lines: Sequence[str]) -> str:
    """One couplet per line: ``上句，下句。``; an odd last line ends with a full stop."""
    rows = []
    for i in range(0, len(lines), 2):
        pair = lines[i : i + 2]
        rows.append(f"{pair[0]}，{pair[1]}。" if len(pair) == 2 else f"{pair[0]}。")
    return "\n".join(rows)


CHINESE_POETRY = "chinese-poetry"
CHINESE_POETRY_VERSION = "2.0.1"  # the npm release the shipped ``tang`` model was trained on


def chinese_poetry_folder(log=None) -> Path:
    """The npm package ``chinese-poetry`` for the source name ``chinese-poetry``: ``./node_modules/chinese-poetry``
    (``npm install chinese-poetry``), else a copy in the cache, else fetched with ``npm pack`` into the cache
    (once; unpacked aside and renamed into place, so an interrupted fetch leaves nothing half there)."""
    import shutil
    import subprocess
    import sys
    import tarfile
    import tempfile

    installed = Path("node_modules") / CHINESE_POETRY
    if installed.is_dir():
        return installed
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synesthesia"
    folder = cache / f"{CHINESE_POETRY}-{CHINESE_POETRY_VERSION}"
    if (folder / "package").is_dir():
        return folder / "package"
    how = (f"`npm pack {CHINESE_POETRY}@{CHINESE_POETRY_VERSION}`, untar it and give the folder (or "
           f"`npm install {CHINESE_POETRY}` here)")
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(f"{CHINESE_POETRY}: no such folder, and npm is not installed to fetch it; install npm "
                          f"(apt-get install npm) and run this again, or {how}")
    (log or (lambda m: print(m, file=sys.stderr)))(
        f"fetching the npm package {CHINESE_POETRY}@{CHINESE_POETRY_VERSION} (85 MB, once) into {folder}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{CHINESE_POETRY}-") as tmp:
        try:
            result = subprocess.run([npm, "pack", f"{CHINESE_POETRY}@{CHINESE_POETRY_VERSION}", "--silent"], cwd=tmp,
                                    capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            raise CorpusError(f"npm took over 30 minutes to fetch {CHINESE_POETRY}; {how}") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            said = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            raise CorpusError(f"npm could not fetch {CHINESE_POETRY} ({said}); check the network, or {how}")
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(Path(tmp) / "unpacked", filter="data")
        if not folder.exists():  # another process may have fetched it meanwhile
            (Path(tmp) / "unpacked").replace(folder)
    return folder / "package"


def find_chinese_poetry_files(root: Path, dynasty: str = "tang") -> list[Path]:
    """The ``poet.<dynasty>.*.json`` files under a chinese-poetry package, in numeric order."""
    candidates = [root, root / "quantangshi", root / "dist" / "quantangshi", root / "package" / "dist" / "quantangshi"]
    for folder in candidates:
        files = list(folder.glob(f"poet.{dynasty}.*.json")) if folder.is_dir() else []
        if files:
            return sorted(files, key=lambda p: int(re.sub(r"\D", "", p.name.split(".")[2]) or 0))
    return []


def read_chinese_poetry(root: Path, dynasty: str = "tang") -> Iterator[dict]:
    """Raw poem objects (title, author, paragraphs) from a chinese-poetry package folder."""
    files = find_chinese_poetry_files(root, dynasty)
    if not files:
        raise CorpusError(
            f"{root}: no poet.{dynasty}.*.json files found; run `npm pack chinese-poetry`, untar it and "
            "pass the unpacked folder (or its dist/quantangshi)"
        )
    for path in files:
        try:
            poems = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{path}: unreadable poem file ({exc}); re-unpack the chinese-poetry package") from None
        if not isinstance(poems, list):
            raise CorpusError(f"{path}: expected a JSON list of poems; is this the chinese-poetry package?")
        yield from (p for p in poems if isinstance(p, dict))


def classical_records(poems: Iterable[dict]) -> tuple[list[Record], Counter]:
    """Records for well-formed poems, and counts of what was skipped and why."""
    records: list[Record] = []
    skipped: Counter[str] = Counter()
    for poem in poems:
        paragraphs = poem.get("paragraphs")
        if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
            skipped["no paragraphs"] += 1
            continue
        lines = poem_lines(paragraphs)
        if lines is None:
            skipped["not clean verse"] += 1
            continue
        if len(lines) < 2:
            skipped["single line"] += 1
            continue
        records.append(Record(text=format_poem(lines), language="zh", form=classify_form(lines)))
    return records, skipped


# --------------------------------------------------------------------------------------------------
# Plain text, fortunes files, folders, JSONL


def split_passages(text: str, min_chars: int = 200, max_chars: int = 800) -> list[str]:
    """Blank-line-separated passages, short neighbours merged up to about ``max_chars``.

    A Debian fortunes file (entries between ``%`` lines) is split at the ``%`` lines instead, one entry
    per passage. Merging keeps dialogue and stanzas together, so a passage carries enough context.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if re.search(r"^%$", text, flags=re.M) and len(re.findall(r"^%$", text, flags=re.M)) >= 2:
        return [entry.strip("\n") for entry in re.split(r"^%$", text, flags=re.M) if entry.strip()]
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in paragraphs:
        if current and size + len(paragraph) > max_chars and size >= min_chars:
            passages.append("\n\n".join(current))
            current, size = [], 0
        current.append(paragraph)
        size += len(paragraph) + 2
    if current:
        passages.append("\n\n".join(current))
    return passages


def _text_records(text: str, language: str | None, min_chars: int, max_chars: int) -> list[Record]:
    records = []
    for passage in split_passages(text, min_chars=min_chars, max_chars=max_chars):
        lang = language or language_of(passage)
        form = None
        if lang == "zh":
            lines = poem_lines(passage.splitlines())
            if lines is not None and len(lines) >= 2:
                form, passage = classify_form(lines), format_poem(lines)
        records.append(Record(text=passage, language=lang, form=form))
    return records


def _jsonl_records(path: Path, language: str | None) -> list[Record]:
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            record = read_jsonl_record(line, f"{path}:{number}")
            if record is None:
                continue
            if not record["text"].strip():
                raise CorpusError(f'{path}:{number}: "text" is empty; give the text or remove that line')
            text = record["text"].strip("\n")
            lang = record["language"] or language or language_of(text)
            records.append(Record(text=text, language=lang, form=record["form"], keywords=record["keywords"]))
    return records


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not UTF-8 text; convert it (e.g. `iconv -t utf-8`) or remove it") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror})") from None


def user_records(source: Path, language: str | None = None, min_chars: int = 200,
                 max_chars: int = 800) -> tuple[list[Record], list[Path]]:
    """Records from a text/JSONL file or a folder of them (searched recursively, in name order)."""
    if source.is_file():
        files = [source]
    else:
        files = sorted(p for p in source.rglob("*")
                       if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        if not files:
            raise CorpusError(f"{source}: no .txt, .md or .jsonl files found; put your texts there")
    records: list[Record] = []
    for path in files:
        if path.suffix.lower() in JSONL_SUFFIXES:
            records.extend(_jsonl_records(path, language))
        else:
            records.extend(_text_records(_read_text(path), language, min_chars, max_chars))
    return records, files


# --------------------------------------------------------------------------------------------------
# Keywords, splitting, writing


def add_keywords(records: list[Record], top_k: int, min_df: int, seed: int, drop_rate: float) -> Counter:
    """Give every record without keywords up to ``top_k`` of its own (TF-IDF within its language).

    Each record keeps a random 1..top_k of its ranked keywords (and none with probability ``drop_rate``),
    so the trained model answers to one keyword as well as to three, and to none.
    """
    rng = random.Random(seed)
    vocabulary: Counter[str] = Counter()
    for language in sorted({r.language for r in records}):
        todo = [r for r in records if r.language == language and not r.keywords]
        if language not in ("zh", "en"):
            continue
        extractor = KeywordExtractor(language, top_k=top_k, min_df=min_df).fit(r.text for r in todo)
        for i, record in enumerate(todo):
            ranked = extractor.extract(i)
            if not ranked or rng.random() < drop_rate:
                continue
            record.keywords = ranked[: rng.randint(1, len(ranked))]
    for record in records:
        vocabulary.update(record.keywords)
    return vocabulary


def split_records(records: list[Record], val_fraction: float, split: str,
                  seed: int) -> tuple[list[Record], list[Record]]:
    """``tail``: the last ``val_fraction`` of the corpus in order (nanoGPT's Shakespeare split);
    ``random``: a seeded shuffle first (a poem collection sorted by poet would otherwise hold out one era).

    The shuffle happens with ``val_fraction=0`` too, so that a trainer which holds out the end of its
    token stream (``synesthesia.train``) holds out a random sample of poems.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = list(records)
    if split == "random":
        random.Random(seed).shuffle(ordered)
    elif split != "tail":
        raise CorpusError(f"split must be 'tail' or 'random', got {split!r}")
    if val_fraction == 0 or len(ordered) < 2:
        return ordered, []
    if split == "tail":
        # By characters, so one long record does not skew the share.
        total = sum(len(r.text) for r in ordered)
        cut, seen = len(ordered), 0
        for i in range(len(ordered) - 1, 0, -1):
            seen += len(ordered[i].text)
            if seen >= val_fraction * total:
                cut = i
                break
        return ordered[:cut], ordered[cut:]
    n_val = max(1, round(len(ordered) * val_fraction))
    return ordered[:-n_val], ordered[-n_val:]


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    with atomic_open(path) as handle:
        handle.writelines(lines)


def _jsonl_lines(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.to_json(), ensure_ascii=False) + "\n"


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a prepared ``.jsonl`` file (for benchmarks and tests)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: prepared corpus file not found; run `synesthesia corpus prepare` first")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_source(source: str | os.PathLike, kind: str, dynasty: str, language: str | None, min_chars: int,
                 max_chars: int) -> tuple[Path, str, list[Record], Counter[str], list[str], str]:
    """The source's records: (its path, the kind it is read as, records, why others were skipped, the files read,
    the default split for that kind)."""
    source_path = Path(source).expanduser()
    if str(source) == CHINESE_POETRY and not source_path.exists():
        source_path = chinese_poetry_folder()
    if not source_path.exists():
        raise CorpusError(f"{source_path}: no such file or folder; give a chinese-poetry folder, a text file or "
                          "a folder")
    if kind == "auto":
        kind = "chinese-poetry" if source_path.is_dir() and find_chinese_poetry_files(source_path, dynasty) else "text"
    if kind == "chinese-poetry":
        records, skipped = classical_records(read_chinese_poetry(source_path, dynasty))
        files = [str(p) for p in find_chinese_poetry_files(source_path, dynasty)]
        return source_path, kind, records, skipped, files, "random"
    if kind == "text":
        records, file_paths = user_records(source_path, language, min_chars=min_chars, max_chars=max_chars)
        return (source_path, kind, records, Counter(), [str(p) for p in file_paths],
                "tail" if source_path.is_file() else "random")
    raise CorpusError(f"kind must be 'chinese-poetry', 'text' or 'auto', got {kind!r}")


def _select(records: list[Record], skipped: Counter[str], *, simplified: bool, forms: Sequence[str] | None,
            limit: int | None) -> list[Record]:
    """The records to keep: in simplified characters if asked, of the wanted forms (the others counted in
    ``skipped``), the first ``limit``."""
    if simplified:
        from synesthesia.keywords import to_simplified

        for record in records:
            if record.language == "zh":
                record.text = to_simplified(record.text)
                record.keywords = [to_simplified(k) for k in record.keywords]
    if forms is not None:
        wanted = set(forms)
        skipped.update(f"form {r.form or 'none'} not requested" for r in records if r.form not in wanted)
        records = [r for r in records if r.form in wanted]
    return records if limit is None else records[:limit]


def prepare(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    kind: str = "auto",
    dynasty: str = "tang",
    simplified: bool = False,
    forms: Sequence[str] | None = None,
    language: str | None = None,
    keywords: int = 3,
    min_df: int | None = None,
    keyword_drop: float = 0.1,
    val_fraction: float = 0.1,
    split: str | None = None,
    min_chars: int = 200,
    max_chars: int = 800,
    limit: int | None = None,
    seed: int = 0,
) -> dict:
    """Prepare ``source`` into ``out_dir`` (see the module docstring); return the manifest.

    - ``kind``: 'chinese-poetry', 'text' (a file or folder of .txt/.md/.jsonl), or 'auto'.
    - ``forms``: keep only these forms (e.g. the four regulated ones); records without a form are kept
      only when ``forms`` is None.
    - ``keywords``: at most this many self-extracted keywords per record (0: none); ``min_df``: a word
      must occur in this many records to be a keyword (default: 0.1% of the records, at least 2).
    - ``split``: 'tail' or 'random' (default: random for poem collections, tail for text).
    - ``limit``: keep the first N records (after the form filter), for quick experiments.
    """
    started = time.time()
    source_path, kind, records, skipped, files, default_split = _read_source(
        source, kind, dynasty, language, min_chars, max_chars)
    found = len(records)
    read_total = found + sum(skipped.values())
    records = _select(records, skipped, simplified=simplified, forms=forms, limit=limit)
    if not records:
        raise CorpusError(f"{source_path}: no usable texts found ({found} read before filtering); check the source "
                          "and --forms")
    if keywords > 0:
        min_df = min_df if min_df is not None else max(2, round(0.001 * len(records)))
        vocabulary = add_keywords(records, keywords, min_df, seed, keyword_drop)
    else:
        vocabulary = Counter()
        for record in records:
            record.keywords = []
    train, val = split_records(records, val_fraction, split or default_split, seed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / TRAIN_FILE, _jsonl_lines(train))
    _atomic_write(out / VAL_FILE, _jsonl_lines(val))
    languages = sorted({r.language for r in records})
    keyword_payload = {"language": languages[0] if len(languages) == 1 else languages,
                       "keywords": dict(sorted(vocabulary.items(), key=lambda kv: (-kv[1], kv[0])))}
    _atomic_write(out / KEYWORDS_FILE, [json.dumps(keyword_payload, ensure_ascii=False, indent=0)])
    manifest = {
        "source": str(source_path),
        "kind": kind,
        "files": len(files),
        "options": {"dynasty": dynasty if kind == "chinese-poetry" else None, "simplified": simplified,
                    "forms": list(forms) if forms is not None else None, "keywords": keywords, "min_df": min_df,
                    "keyword_drop": keyword_drop, "val_fraction": val_fraction, "split": split or default_split,
                    "min_chars": min_chars, "max_chars": max_chars, "limit": limit, "seed": seed},
        "script": ("simplified" if simplified else "traditional") if "zh" in languages else None,
        "languages": languages,
        "records": {"read": read_total, "usable": found, "train": len(train), "val": len(val),
                    "skipped": dict(sorted(skipped.items()))},
        "forms": {"train": _form_counts(train), "val": _form_counts(val)},
        "characters": {"train": sum(len(r.text) for r in train), "val": sum(len(r.text) for r in val)},
        "keyword_vocabulary": len(vocabulary),
        "records_with_keywords": sum(1 for r in records if r.keywords),
        "seconds": round(time.time() - started, 1),
        "outputs": [TRAIN_FILE, VAL_FILE, KEYWORDS_FILE, MANIFEST_FILE],
    }
    _atomic_write(out / MANIFEST_FILE, [json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"])
    return manifest


def _form_counts(records: Sequence[Record]) -> dict[str, int]:
    counts = Counter(r.form or "none" for r in records)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def cli_prepare(source: str, out: Path, **options) -> dict:
    """``synesthesia corpus prepare``: prepare and return the counts a user wants to see."""
    manifest = prepare(source, out, **options)
    return {
        "out": str(Path(out)),
        "records": manifest["records"],
        "forms": manifest["forms"]["train"],
        "characters": manifest["characters"],
        "keyword_vocabulary": manifest["keyword_vocabulary"],
        "files": [str(Path(out) / name) for name in manifest["outputs"]],
    }


def main(args: Sequence[str] | None = None) -> dict:
    """``python -m synesthesia.corpus SOURCE --out DIR [options]`` (the same as the CLI command)."""
    parser = argparse.ArgumentParser(prog="synesthesia corpus prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--kind", default="auto", choices=["auto", "chinese-poetry", "text"])
    parser.add_argument("--dynasty", default="tang", choices=["tang", "song"])
    parser.add_argument("--simplified", action="store_true")
    parser.add_argument("--forms", default=None, help="comma-separated forms to keep, e.g. 五绝,七绝,五律,七律")
    parser.add_argument("--language", default=None, choices=["zh", "en"])
    parser.add_argument("--keywords", type=int, default=3)
    parser.add_argument("--min-df", type=int, default=None)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split", default=None, choices=["tail", "random"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(args)
    counts = cli_prepare(
        ns.source, ns.out, kind=ns.kind, dynasty=ns.dynasty, simplified=ns.simplified,
        forms=ns.forms.split(",") if ns.forms else None, language=ns.language, keywords=ns.keywords,
        min_df=ns.min_df, val_fraction=ns.val_fraction, split=ns.split, limit=ns.limit, seed=ns.seed,
    )
    print(json.dumps(counts, ensure_ascii=False, indent=2))
    return counts


if __name__ == "__main__":
    main()
