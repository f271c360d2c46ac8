"""The artworks index: SQLite (stdlib ``sqlite3``), a cache of the artwork folders, which stay the source of truth.

``ARTWORKS/.synesthesia-index.sqlite`` holds one row per artwork (``RUN_DIR/artwork/manifest.json`` anywhere
under ``ARTWORKS``, symlinks never followed) and the server's jobs. Delete it and the next start rebuilds it
from the manifests; at every start, manifests that changed (``synesthesia render`` makes a new revision),
appeared or vanished are brought in line by their modification times. An artwork's id is its run folder
relative to ``ARTWORKS`` with ``/`` written as ``~`` (the server's own are one folder: ``20261130-024501-3fa9c2``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synesthesia.errors import ConfigError

INDEX_FILE = ".synesthesia-index.sqlite"
SCHEMA_VERSION = "2"
MAX_DEPTH = 6
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._~-]{0,254}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS artworks (
    id TEXT PRIMARY KEY, rel TEXT NOT NULL, created TEXT NOT NULL, form TEXT, language TEXT, theme TEXT,
    title TEXT, text TEXT, model TEXT, seed INTEGER, revision INTEGER, valid INTEGER, files TEXT,
    mtime_ns INTEGER);
CREATE INDEX IF NOT EXISTS artworks_created ON artworks (created DESC, id DESC);
CREATE INDEX IF NOT EXISTS artworks_form ON artworks (form, created DESC);
CREATE INDEX IF NOT EXISTS artworks_model ON artworks (model, created DESC);
CREATE INDEX IF NOT EXISTS artworks_theme ON artworks (theme);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, created TEXT, started TEXT, finished TEXT, intent TEXT,
    artwork_id TEXT, error TEXT, warnings TEXT, seconds REAL);
"""

SUMMARY_COLUMNS = "id, created, form, language, theme, title, text, model, seed, revision, valid, files"


def artwork_id(rel: str) -> str:
    return rel.replace("/", "~")


def _row_summary(row: tuple) -> dict[str, Any]:
    (id_, created, form, language, theme, title, text, model, seed, revision, valid, files) = row
    return {"id": id_, "created": created, "form": form, "language": language, "theme": theme, "title": title,
            "text": text, "model": model, "seed": seed, "revision": revision,
            "valid": None if valid is None else valid == 1, "files": files.split("\n") if files else [],
            "url": "/v1/artworks/" + id_, "files_url": "/v1/artworks/" + id_ + "/files/"}


def summarize(manifest: dict[str, Any]) -> dict[str, Any]:
    intent = dict(manifest.get("intent") or {})
    validation = manifest.get("validation") or {}
    model = dict(manifest.get("model") or {})
    return {"created": str(manifest.get("created") or ""), "form": intent.get("form"),
            "language": intent.get("language"), "theme": intent.get("theme") or "", "title": intent.get("title") or "",
            "text": str(manifest.get("text") or ""), "model": model.get("name"), "seed": manifest.get("seed"),
            "revision": manifest.get("revision"),
            "valid": None if not isinstance(validation, dict) or "ok" not in validation else bool(validation["ok"]),
            "files": sorted(list(dict(manifest.get("files") or {})) + ["manifest.json"])}


def parse_when(value: str, *, end: bool) -> str:
    """A date (``2026-11-30``) or ISO time as the UTC ISO string manifests use; a date's end is the next day."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = _dt.date.fromisoformat(value)
            if end:
                day += _dt.timedelta(days=1)
            moment = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
        else:
            moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.UTC)
    except ValueError:
        raise ConfigError(f"'{value[:40]}' is not a date (2026-11-30) or an ISO time (2026-11-30T02:45:00Z)") from None
    return moment.astimezone(_dt.UTC).isoformat(timespec="seconds")


class ArtworkIndex:
    """One SQLite connection shared by the server's threads behind a lock (WAL, small transactions)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / INDEX_FILE
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            version = None
            try:
                version = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            except sqlite3.OperationalError:
                pass
            if version is not None and version[0] != SCHEMA_VERSION:
                self.db.executescript("DROP TABLE IF EXISTS artworks; DROP TABLE IF EXISTS jobs;")
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # -- the folders -------------------------------------------------------------------------------

    def _walk(self, folder: Path, depth: int) -> Iterator[Path]:
        """Run folders (holding ``artwork/manifest.json``) under ``folder``; no symlinks, no hidden folders."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        names = {e.name for e in entries}
        if "artwork" in names and folder != self.root:
            manifest = folder / "artwork" / "manifest.json"
            if manifest.is_file() and not (folder / "artwork").is_symlink() and not manifest.is_symlink():
                yield folder
            return
        if depth >= MAX_DEPTH:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "revisions":
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), depth + 1)

    def sync(self, only: list[str] | None = None) -> dict[str, Any]:
        """Bring the index in line with the folders: add new, refresh changed, drop vanished. With ``only``
        (names of folders in the root), look in those alone and drop nothing."""
        with self._lock:
            known = {rel: mtime for rel, mtime in self.db.execute("SELECT rel, mtime_ns FROM artworks")}
        seen, added, updated, new_ids = set(), 0, 0, []
        if only is None:
            run_dirs = self._walk(self.root, 0)
        else:
            run_dirs = (d for name in only if not name.startswith(".") and "/" not in name
                        and (self.root / name).is_dir() and not (self.root / name).is_symlink()
                        for d in ([self.root / name] if (self.root / name / "artwork").is_dir()
                                  else self._walk(self.root / name, 1)))
        for run_dir in run_dirs:
            rel = run_dir.relative_to(self.root).as_posix()
            seen.add(rel)
            try:
                mtime = (run_dir / "artwork" / "manifest.json").stat().st_mtime_ns
            except OSError:
                continue
            if known.get(rel) == mtime:
                continue
            id_ = self.add(run_dir)
            if id_ is not None:
                added += rel not in known
                updated += rel in known
                if rel not in known:
                    new_ids.append(id_)
        gone = [rel for rel in known if rel not in seen] if only is None else []
        with self._lock:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM artworks WHERE rel = ?", [(rel,) for rel in gone])
            self.db.execute("COMMIT")
        return {"artworks": len(seen), "added": added, "updated": updated, "removed": len(gone), "new": new_ids}

    def fingerprint(self) -> dict[str, int]:
        """Cheap change detector: modification times of the root and its folders (a new run folder, a new
        date folder of ``synesthesia run`` outputs, a new artwork swapped in)."""
        marks: dict[str, int] = {}
        try:
            for entry in os.scandir(self.root):
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    marks[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            pass
        return marks

    def add(self, run_dir: Path) -> str | None:
        """(Re)index one run folder from its manifest; its id, or None when it is not an artwork under root."""
        run_dir = Path(run_dir)
        try:
            rel = run_dir.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None
        manifest_path = run_dir / "artwork" / "manifest.json"
        try:
            mtime = manifest_path.stat().st_mtime_ns
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        id_ = artwork_id(rel)
        if not ID_PATTERN.match(id_):
            return None
        s = summarize(manifest)
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO artworks (id, rel, created, form, language, theme, title, text, model, seed, "
                "revision, valid, files, mtime_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (id_, rel, s["created"], s["form"], s["language"], s["theme"], s["title"], s["text"], s["model"],
                 s["seed"], s["revision"], None if s["valid"] is None else int(s["valid"]),
                 "\n".join(f for f in s["files"] if "\n" not in f), mtime))
        return id_

    def rel_of(self, id_: str) -> str | None:
        if not ID_PATTERN.match(id_ or "") or ".." in id_:
            return None
        with self._lock:
            row = self.db.execute("SELECT rel FROM artworks WHERE id = ?", (id_,)).fetchone()
        return row[0] if row else None

    def get(self, id_: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(f"SELECT {SUMMARY_COLUMNS} FROM artworks WHERE id = ?", (id_,)).fetchone()
        return _row_summary(row) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM artworks").fetchone()[0])

    def search(self, *, q: str | None = None, theme: str | None = None, form: str | None = None,
               model: str | None = None, language: str | None = None, since: str | None = None,
               until: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """Newest first. ``q``: text, theme or title contains it; ``theme``: theme contains it; ``form``,
        ``model``, ``language``: equal; ``since``/``until``: dates or ISO times (a date's ``until`` includes it)."""
        where, args = [], []

        def like(value: str) -> str:
            return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        if q:
            where.append("(text LIKE ? ESCAPE '\\' OR theme LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\')")
            args += [like(q)] * 3
        if theme:
            where.append("theme LIKE ? ESCAPE '\\'")
            args.append(like(theme))
        for column, value in (("form", form), ("model", model), ("language", language)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since:
            where.append("created >= ?")
            args.append(parse_when(since, end=False))
        if until:
            where.append("created < ?" if len(until.strip()) == 10 else "created <= ?")
            args.append(parse_when(until, end=True))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            total = int(self.db.execute(f"SELECT COUNT(*) FROM artworks{clause}", args).fetchone()[0])
            rows = self.db.execute(f"SELECT {SUMMARY_COLUMNS} FROM artworks{clause} ORDER BY created DESC, id DESC "
                                   "LIMIT ? OFFSET ?", [*args, int(limit), int(offset)]).fetchall()
        return {"object": "list", "data": [_row_summary(r) for r in rows], "total": total, "limit": int(limit),
                "offset": int(offset)}

    # -- jobs ----------------------------------------------------------------------------------------

    def save_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO jobs (id, status, created, started, finished, intent, artwork_id, error, "
                "warnings, seconds) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job["id"], job["status"], job.get("created"), job.get("started"), job.get("finished"),
                 json.dumps(job.get("intent"), ensure_ascii=False), job.get("artwork_id"), job.get("error"),
                 json.dumps(job.get("warnings") or [], ensure_ascii=False), job.get("seconds")))

    def load_job(self, id_: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT id, status, created, started, finished, intent, artwork_id, error, "
                                  "warnings, seconds FROM jobs WHERE id = ?", (id_,)).fetchone()
        if row is None:
            return None
        keys = ("id", "status", "created", "started", "finished", "intent", "artwork_id", "error", "warnings",
                "seconds")
        job = dict(zip(keys, row))
        job["intent"] = json.loads(job["intent"] or "null")
        job["warnings"] = json.loads(job["warnings"] or "[]")
        return job

    def unfinished_jobs(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
