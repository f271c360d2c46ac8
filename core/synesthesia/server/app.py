"""The FastAPI app: ``create_app(Settings(...))``. See ``synesthesia.server`` for the endpoints and JSON shapes."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request as _Request

from synesthesia.errors import ConfigError, SynesthesiaError

STATIC_DIR = Path(__file__).parent / "static"
API_KEY_ENV = "SYNESTHESIA_API_KEY"


@dataclass
class Settings:
    artworks: Path = Path("gallery")
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    # Served models (the allowlist): checkpoint names or folders, or "generator:name"; empty = the shipped ones.
    models: list[str] = field(default_factory=list)
    queue_size: int = 16
    grace: float = 30.0  # seconds the job in hand gets to finish at shutdown
    max_body_bytes: int = 64 * 1024
    max_tokens: int = 1024
    max_prompt_chars: int = 2000
    threads: int = 1
    # torch.compile every served transformer's decoding step (model.compile): the first decode of each model
    # waits for the compile, and every later token is faster.
    compile: bool = False
    # Seconds between looks for artworks that other processes wrote into the folder (0: never).
    rescan: float = 5.0
    # One copy of each model for the API and the job worker together (chats then wait while a job decodes).
    share_models: bool = False
    # Before serving: decode and render one small artwork per language into a temporary folder, so that the
    # first request does not pay for loading form tables, fonts and music libraries.
    warm_up: bool = True


def is_loopback(host: str) -> bool:
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Binding beyond loopback needs an API key for the write endpoints."""
    if not is_loopback(settings.host) and not settings.api_key:
        raise ConfigError(f"binding {settings.host} (beyond this machine) needs an API key: pass --api-key or set "
                          f"{API_KEY_ENV}")


class ServerState:
    """Everything the routes share: settings, registry, models, index, jobs, events."""

    def __init__(self, settings: Settings) -> None:
        from synesthesia.plugins import get_registry
        from synesthesia.server.index import ArtworkIndex
        from synesthesia.server.intent import compose_base_config
        from synesthesia.server.jobs import EventBroker, JobQueue
        from synesthesia.server.models import Models, SharedGenerators

        check_bind(settings)
        self.settings = settings
        self.started = int(time.time())
        self.registry = get_registry()
        self.base_config = compose_base_config(self.registry)
        self.base_config.setdefault("model", {}).update(threads=int(settings.threads), compile=bool(settings.compile))
        self.generators = SharedGenerators()
        entries = list(settings.models) or sorted(self.registry.checkpoints())
        api_generators = self.generators if settings.share_models else SharedGenerators()
        self.models = Models(self.registry, self.base_config, entries, api_generators, self.generators)
        self.root = Path(settings.artworks).resolve()
        self.index = ArtworkIndex(self.root)
        self.events = EventBroker()
        self.jobs = JobQueue(root=self.root, index=self.index, registry=self.registry, generators=self.generators,
                             events=self.events, maxsize=settings.queue_size, grace=settings.grace)
        self.requests = 0
        self.listener_name = f"synesthesia-server-{id(self)}"
        self.stopping = False
        self._announced: set[str] = set()
        self._announce_lock = threading.Lock()
        self._stop_rescan = threading.Event()

    def count_request(self) -> None:
        self.requests += 1

    def on_artwork(self, artwork: Any) -> None:
        from synesthesia.server.index import artwork_id

        run_dir = Path(artwork.path).parent
        if self.index.add(run_dir) is None:
            return  # made elsewhere, outside the gallery
        rel = run_dir.resolve().relative_to(self.root).as_posix()
        self.announce(artwork_id(rel))

    def announce(self, id_: str) -> None:
        """One ``artwork_created`` event per new artwork, whoever found it first (the hook or a rescan)."""
        with self._announce_lock:
            if id_ in self._announced:
                return
            self._announced.add(id_)
        summary = self.index.get(id_)
        if summary is not None:
            self.events.publish("artwork_created", summary)

    def _rescan(self) -> None:
        """Artworks other processes write into the folder (``synesthesia run``, an installation loop) are
        indexed and announced within ``rescan`` seconds (only the folders whose modification time changed are
        looked into); a full look every five minutes catches new revisions and removals."""
        last, last_full = self.index.fingerprint(), time.monotonic()
        while not self._stop_rescan.wait(self.settings.rescan):
            try:
                mark = self.index.fingerprint()
                if time.monotonic() - last_full > 300:
                    found, last_full = self.index.sync(), time.monotonic()
                else:
                    changed = [name for name, mtime in mark.items() if last.get(name) != mtime]
                    found = self.index.sync(only=changed) if changed else {"new": []}
                last = mark
                for id_ in found["new"]:
                    self.announce(id_)
            except Exception as exc:  # never fatal: the folders stay the truth, the next look retries
                log(f"warning: rescan of {self.root} failed: {type(exc).__name__}: {exc}")

    def start(self) -> None:
        import torch

        from synesthesia.server.jobs import ArtworkListener

        torch.set_num_threads(max(1, int(self.settings.threads)))
        self.sync = self.index.sync()
        if self.settings.warm_up:
            self.warm_up()
        self.registry.pm.register(ArtworkListener(self.on_artwork), name=self.listener_name)
        self.jobs.start()
        if self.settings.rescan > 0:
            threading.Thread(target=self._rescan, name="synesthesia-rescan", daemon=True).start()

    def warm_up(self) -> list[str]:
        """One small artwork per language (all renderers, one candidate) into a temporary folder, and one
        streamed token per form's language, for the served models that ``auto`` picks."""
        import tempfile

        from synesthesia.pipeline import plan, run_pipeline
        from synesthesia.server.intent import ArtworkIntent, check_planned_model, intent_to_config

        class Quiet:  # the registry, except that warm-up artworks are announced to no listener (no MIDI played)
            def __init__(self, registry: Any) -> None:
                self._registry = registry

            def notify_artwork_created(self, artwork: Any) -> None:
                pass

            def __getattr__(self, name: str) -> Any:
                return getattr(self._registry, name)

        quiet = Quiet(self.registry)
        done = []
        with tempfile.TemporaryDirectory(prefix="synesthesia-warm-") as folder:
            for form, theme in (("七绝", "秋月"), ("haiku", "winter sea")):
                intent = ArtworkIntent(form=form, theme=theme, generation={"candidates": 1, "max_attempts": 1})
                try:
                    config = intent_to_config(intent, self.base_config, self.models)
                    check_planned_model(plan(config, self.registry), self.models)
                    run_pipeline(config, Path(folder) / form, registry=quiet, log=lambda m: None,
                                 generators=self.generators)
                    done.append(form)
                except SynesthesiaError:
                    continue  # that language's model is not served
                except Exception as exc:  # a warm-up is best effort
                    log(f"warning: warm-up of {form} failed: {type(exc).__name__}: {exc}")
        return done

    def begin_shutdown(self) -> None:
        """Called on SIGINT/SIGTERM before connections close: no new jobs, event streams end."""
        self.stopping = True
        self._stop_rescan.set()
        with self.jobs._lock:
            self.jobs._accepting = False
        self.events.close()

    def stop(self) -> None:
        self.begin_shutdown()
        self.jobs.stop()
        try:
            self.registry.pm.unregister(name=self.listener_name)
        except Exception:
            pass
        self.index.close()

    # -- security ------------------------------------------------------------------------------------

    def require_write(self, request: _Request) -> None:
        """Write endpoints: JSON bodies, and the API key when one is set."""
        from fastapi import HTTPException

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HTTPException(415, "send the body as application/json")
        key = self.settings.api_key
        if not key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(401, "a valid API key is needed: Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a Content-Length."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": {"message": f"the request body is over {self.max_bytes} bytes",
                                     "type": "invalid_request_error", "param": None, "code": "too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
           headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _one_line(errors: list[dict]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "is not a key a run accepts here"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def create_app(settings: Settings, state: ServerState | None = None):
    """The app; the state (models, index, worker) starts with the app's lifespan and stops with it."""
    import contextlib

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    from synesthesia.server import artworks_api, openai_api

    state = state or ServerState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(state.start)
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    app = FastAPI(title="Synesthesia", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.synesthesia = state

    @app.exception_handler(SynesthesiaError)
    async def _synesthesia_error(request: Request, exc: SynesthesiaError):
        status = 404 if str(exc).startswith(("model '", "no artwork")) and "not served" in str(exc) else 400
        return _error(status, str(exc), code="model_not_found" if status == 404 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return _error(422, _one_line(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            exc.status_code, "invalid_request_error")
        return _error(exc.status_code, str(exc.detail), kind, headers=getattr(exc, "headers", None))

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404
                      else "invalid_request_error", headers=getattr(exc, "headers", None))

    @app.get("/health")
    def health() -> dict[str, Any]:
        from synesthesia.server.jobs import current_rss_mb, peak_rss_mb

        return {"status": "stopping" if state.stopping else "ok", "version": _version(),
                "uptime_s": int(time.time()) - state.started, "models": list(state.models.served),
                "loaded": [m for m, s in state.models.served.items() if state.models.is_loaded(s)],
                "jobs": state.jobs.stats(), "artworks": state.index.count(), "requests": state.requests,
                "rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(), "pid": os.getpid()}

    app.include_router(openai_api.build_router(state))
    app.include_router(artworks_api.build_router(state))

    # The gallery page's hook: static/ at /static, static/index.html at / (when another part provides them).
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index_page():
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return JSONResponse({"name": "synesthesia", "version": _version(), "health": "/health",
                             "openai": ["/v1/models", "/v1/completions", "/v1/chat/completions"],
                             "artworks": "/v1/artworks", "jobs": "/v1/jobs/{id}", "events": "/v1/events",
                             "docs": "/docs"})

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if is_loopback(settings.host):
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        # A page elsewhere cannot reach a loopback server through a rebound DNS name.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1",
                                                                 settings.host])
    _ = StreamingResponse
    return app


def _version() -> str:
    from synesthesia import __version__

    return __version__


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
