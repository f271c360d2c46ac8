"""The job queue: bounded, one worker thread running ``run_pipeline`` with the shared models; the event broker.

A job is accepted only when the queue has room (otherwise the API answers 429 with ``Retry-After``). The
worker makes each artwork into ``ARTWORKS/<job id>/`` through ``run_pipeline``, which writes into a staging
folder and renames it into place, so an artwork is complete or absent. Every accepted job ends as
``succeeded`` (with its artwork id) or ``failed``/``abandoned`` (with the reason): jobs are kept in the
index's SQLite file, and jobs a previous process left queued or running are marked ``abandoned`` at start.

Shutdown: no new jobs; queued jobs are marked ``abandoned``; the job in hand gets ``grace`` seconds to
finish, after which the models' cancel flag stops it at its next decoding step (it is marked ``abandoned``,
and its staging folder is removed: no half-written artwork).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as _dt
import os
import queue
import secrets
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import synesthesia
from synesthesia.errors import SynesthesiaError
from synesthesia.server.models import JobAbandoned


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("the job queue is full")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    pass


class EventBroker:
    """Server-sent events for every listener: ``artwork_created`` and job changes, with the last 256 kept so
    a client reconnecting with ``Last-Event-ID`` gets what it missed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 1
        self._recent: collections.deque = collections.deque(maxlen=256)
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.closed = False

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            event = (self._next, kind, data)
            self._next += 1
            self._recent.append(event)
            subscribers = list(self._subscribers)
        for loop, q in subscribers:
            try:
                loop.call_soon_threadsafe(q.put_nowait, event)
            except RuntimeError:  # its loop is closed
                pass

    def subscribe(self, last_id: int | None) -> tuple[asyncio.Queue, list]:
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), q))
            missed = [e for e in self._recent if last_id is not None and e[0] > last_id]
        return q, missed

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(loop, s) for loop, s in self._subscribers if s is not q]

    def close(self) -> None:
        self.closed = True
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, q in subscribers:
            try:
                loop.call_soon_threadsafe(q.put_nowait, None)
            except RuntimeError:
                pass


class ArtworkListener:
    """The ``artwork_created`` hook of a running server: index the artwork, tell the event stream."""

    def __init__(self, on_artwork: Callable[[Any], None]) -> None:
        self._on_artwork = on_artwork

    @synesthesia.hookimpl
    def artwork_created(self, artwork):
        self._on_artwork(artwork)


class JobQueue:
    def __init__(self, *, root: Path, index: Any, registry: Any, generators: Any, events: EventBroker,
                 maxsize: int, grace: float) -> None:
        self.root, self.index, self.registry, self.generators = Path(root), index, registry, generators
        self.events, self.grace = events, grace
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._current: str | None = None
        self._accepting = True
        self._durations: collections.deque = collections.deque(maxlen=20)
        self.counts: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._work, name="synesthesia-job-worker", daemon=True)

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> None:
        for id_ in self.index.unfinished_jobs():  # a previous process stopped without finishing them
            job = self.index.load_job(id_)
            if job is not None:
                job.update(status="abandoned", finished=now_iso(),
                           error="the server stopped before this job finished; no artwork was written")
                self.index.save_job(job)
                self._clean_run_dir(self.root / id_)
        self._thread.start()

    def stop(self) -> None:
        """Refuse new jobs, abandon the queued ones, give the job in hand ``grace`` seconds, then cancel it."""
        with self._lock:
            self._accepting = False
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, "abandoned", error="the server shut down before this job started")
        self._queue.put(None)
        self._thread.join(self.grace)
        if self._thread.is_alive():
            self.generators.cancel.set()
            self._thread.join(10)

    @property
    def accepting(self) -> bool:
        return self._accepting

    # -- the API's side ----------------------------------------------------------------------------

    def submit(self, intent: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if not self._accepting:
                raise ShuttingDown()
            id_ = new_job_id()
            while id_ in self._jobs or (self.root / id_).exists():
                id_ = new_job_id()
            job: dict[str, Any] = {"id": id_, "object": "job", "status": "queued", "created": now_iso(),
                                   "started": None, "finished": None, "intent": intent, "artwork_id": None,
                                   "error": None, "warnings": [], "seconds": None}
            if self._queue.full():
                raise QueueFull(self.retry_after())
            snapshot = self.public(job)
            self._jobs[id_] = job
            self.index.save_job(job)
            self.events.publish("job", snapshot)
            self._queue.put_nowait({"id": id_, "config": config})  # only this thread puts while accepting
            self.counts["accepted"] += 1
        return snapshot

    def retry_after(self) -> int:
        average = sum(self._durations) / len(self._durations) if self._durations else 3.0
        return max(1, int(round(average * max(1, self._queue.qsize()) / max(1, self._queue.maxsize))))

    def get(self, id_: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(id_)
            if job is not None:
                return self.public(job)
        job = self.index.load_job(id_)
        return self.public({**job, "object": "job"}) if job else None

    def public(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in job.items()}
        out["object"] = "job"
        out["url"] = f"/v1/jobs/{job['id']}"
        out["artwork_url"] = f"/v1/artworks/{job['artwork_id']}" if job.get("artwork_id") else None
        return out

    def stats(self) -> dict[str, Any]:
        return {"queued": self._queue.qsize(), "capacity": self._queue.maxsize, "running": self._current,
                **{k: v for k, v in self.counts.items()}}

    # -- the worker ----------------------------------------------------------------------------------

    def _finish(self, item: dict[str, Any], status: str, *, error: str | None = None,
                artwork_id: str | None = None, started: float | None = None) -> None:
        with self._lock:
            job = self._jobs.pop(item["id"], None) or self.index.load_job(item["id"]) or {"id": item["id"]}
        job.update(status=status, finished=now_iso(), error=error, artwork_id=artwork_id)
        if started is not None:
            job["seconds"] = round(time.perf_counter() - started, 3)
        self.index.save_job(job)
        self.counts[status] += 1
        self.events.publish("job", self.public(job))

    def _clean_run_dir(self, run_dir: Path) -> None:
        """Remove staging folders a stopped job left, and the run folder if nothing else is in it."""
        if not run_dir.is_dir() or run_dir.is_symlink():
            return
        for leftover in run_dir.glob(".artwork-staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            if {p.name for p in run_dir.iterdir()} <= {".synesthesia.lock"}:
                (run_dir / ".synesthesia.lock").unlink(missing_ok=True)
                run_dir.rmdir()
        except OSError:
            pass

    def _work(self) -> None:
        from synesthesia.pipeline import run_pipeline

        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._lock:
                job = self._jobs.get(item["id"])
                if job is None:
                    continue
                job.update(status="running", started=now_iso())
                self._current = item["id"]
                self.index.save_job(job)
                self.events.publish("job", self.public(job))
            started = time.perf_counter()
            warnings: list[str] = job["warnings"]

            def log(message: object, warnings: list[str] = warnings) -> None:
                warnings.append(str(message)[:500])

            try:
                artwork = run_pipeline(item["config"], self.root / item["id"], registry=self.registry,
                                       log=log, generators=self.generators)
                self._durations.append(time.perf_counter() - started)
                artwork_id = self.index.add(artwork.path.parent) or None
                self._finish(item, "succeeded", artwork_id=artwork_id, started=started)
            except JobAbandoned as exc:
                self._clean_run_dir(self.root / item["id"])
                self._finish(item, "abandoned", error=str(exc), started=started)
            except SynesthesiaError as exc:
                self._clean_run_dir(self.root / item["id"])
                self._finish(item, "failed", error=str(exc), started=started)
            except Exception as exc:  # a bug in a plugin: reported, and the worker goes on
                traceback.print_exc(file=sys.stderr)
                self._clean_run_dir(self.root / item["id"])
                self._finish(item, "failed", error=f"{type(exc).__name__}: {exc}", started=started)
            finally:
                with self._lock:
                    self._current = None


def peak_rss_mb() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(usage / 1024, 1)


def current_rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0
