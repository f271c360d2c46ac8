"""The artworks API: jobs in, artworks out, files served only from inside the artworks folder, live events."""


import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

from synesthesia.server.intent import ArtworkIntent


def safe_file(root: Path, artwork_dir: Path, rel: str, allowed: set[str]) -> Path | None:
    """The file ``rel`` of an artwork, or None: no absolute paths, no ``..``, no symlinks anywhere on the way,
    nothing outside the artworks folder, and only files the manifest lists."""
    if not rel or len(rel) > 512 or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or rel not in allowed:
        return None
    real_root = os.path.realpath(root)
    base = os.path.realpath(artwork_dir)
    if base != os.path.normpath(os.path.abspath(artwork_dir)) or os.path.commonpath([base, real_root]) != real_root:
        return None  # the run folder or its artwork folder is a symlink, or lies outside the root
    path = os.path.join(base, *parts)
    if os.path.realpath(path) != path:  # a symlink on the way
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return Path(path)


def build_router(state: Any):
    from fastapi import APIRouter, Depends, HTTPException, Query, Request
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    from synesthesia.pipeline import plan
    from synesthesia.server.intent import check_planned_model, intent_to_config
    from synesthesia.server.jobs import QueueFull, ShuttingDown

    router = APIRouter()
    write = Depends(state.require_write)

    def artwork_dir(id_: str) -> Path:
        rel = state.index.rel_of(id_)
        if rel is None:
            raise HTTPException(404, f"no artwork '{id_[:80]}'")
        return state.root / rel / "artwork"

    @router.post("/v1/artworks", status_code=202, dependencies=[write])
    def create_artwork(intent: ArtworkIntent):
        config = intent_to_config(intent, state.base_config, state.models)
        plan_ = plan(config, state.registry)  # every check the CLI makes, before queueing
        check_planned_model(plan_, state.models)
        try:
            job = state.jobs.submit(intent.model_dump(exclude_defaults=True), config)
        except QueueFull as exc:
            raise HTTPException(429, f"the job queue is full ({state.settings.queue_size} waiting); retry in "
                                     f"{exc.retry_after} s", headers={"Retry-After": str(exc.retry_after)}) from None
        except ShuttingDown:
            raise HTTPException(503, "the server is shutting down", headers={"Retry-After": "5"}) from None
        state.count_request()
        return JSONResponse(job, status_code=202, headers={"Location": job["url"]})

    @router.get("/v1/jobs/{job_id}")
    def get_job(job_id: str):
        job = state.jobs.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise HTTPException(404, f"no job '{job_id[:64]}'")
        return job

    @router.get("/v1/artworks")
    def list_artworks(q: Optional[str] = Query(None, max_length=200),
                      theme: Optional[str] = Query(None, max_length=200),
                      form: Optional[str] = Query(None, max_length=40),
                      model: Optional[str] = Query(None, max_length=200),
                      language: Optional[str] = Query(None, max_length=8),
                      since: Optional[str] = Query(None, max_length=40),
                      until: Optional[str] = Query(None, max_length=40),
                      limit: int = Query(50, ge=1, le=10000), offset: int = Query(0, ge=0)):
        return state.index.search(q=q, theme=theme, form=form, model=model, language=language, since=since,
                                  until=until, limit=limit, offset=offset)

    @router.get("/v1/artworks/{artwork_id}")
    def get_artwork(artwork_id: str):
        folder = artwork_dir(artwork_id)
        manifest_path = folder / "manifest.json"
        if manifest_path.is_symlink() or not manifest_path.is_file():
            raise HTTPException(404, f"no artwork '{artwork_id}'")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise HTTPException(404, f"artwork '{artwork_id}' has no readable manifest") from None
        state.index.add(folder.parent)  # a new revision since it was indexed
        summary = state.index.get(artwork_id) or {"id": artwork_id}
        return {**summary, "manifest": manifest}

    @router.get("/v1/artworks/{artwork_id}/files/{path:path}")
    def get_file(artwork_id: str, path: str):
        folder = artwork_dir(artwork_id)
        summary = state.index.get(artwork_id) or {}
        found = safe_file(state.root, folder, path, set(summary.get("files") or []))
        if found is None:
            raise HTTPException(404, f"no file '{path[:120]}' in artwork '{artwork_id}'")
        return FileResponse(found, headers={"X-Content-Type-Options": "nosniff",
                                            "Content-Security-Policy": "sandbox",
                                            "Cache-Control": "public, max-age=60"})

    @router.get("/v1/events")
    async def events(request: Request):
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            last_id = int(last) if last else None
        except ValueError:
            last_id = None
        q, missed = state.events.subscribe(last_id)
        return StreamingResponse(_event_stream(state.events, q, missed), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


async def _event_stream(events: Any, q: Any, missed: list) -> AsyncIterator[str]:
    """Server-sent events: what the subscriber missed, then each new event (a keep-alive every 15 s of quiet)
    until the server closes; the subscription ends with the stream."""
    try:
        yield "retry: 2000\n\n"
        for event in missed:
            yield _format(event)
        while not events.closed:
            try:
                event = await asyncio.wait_for(q.get(), timeout=15)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield _format(event)
    finally:
        events.unsubscribe(q)


def _format(event: tuple) -> str:
    id_, kind, data = event
    return f"id: {id_}\nevent: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
