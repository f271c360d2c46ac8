"""The models a server serves: an allowlist fixed at start, each model loaded once at start and kept.

A ``SharedGenerators`` (a ``GeneratorCache``) holds each model once. By default the server keeps two: one
for the job worker (shared by every job) and one for the OpenAI-compatible API, so a chat never waits
while an artwork's candidates decode (the shipped models are 4-6 MB each); ``--share-models`` keeps one.
Every loaded model gets a first-come-first-served lock: a pipeline's ``generate``/``score`` holds it for
the call, a stream takes it for one step at a time, so concurrent chat streams interleave token by token
and never decode on the same model at the same instant. The pipeline's view of a model also keeps the
``describe()`` taken right after its own decoding, so nothing between a job's decoding and its manifest
can change that manifest's provenance.
"""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.pipeline import GeneratorCache


class JobAbandoned(SynesthesiaError):
    """The server is shutting down and the job in hand stopped before its artwork was written."""


class FairLock:
    """A lock handed to waiters in arrival order: a stream that releases it and asks again queues behind the
    streams already waiting, instead of winning it back at once. Not reentrant."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque = collections.deque()
        self._held = False

    def acquire(self) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # release() hands the lock over, still held
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Guarded:
    """A loaded generator behind its model's lock (and, for jobs, the server's cancel flag)."""

    def __init__(self, inner: Any, lock: FairLock, cancel: threading.Event | None = None) -> None:
        self._inner = inner
        self._lock = lock
        self._cancel = cancel
        self._description: dict[str, Any] | None = None
        if callable(getattr(inner, "score", None)):
            self.score = self._score

    def _check(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise JobAbandoned("the server is shutting down; the job was abandoned before its artwork was written")

    def generate(self, request: Any) -> list[str]:
        self._check()
        with self._lock:
            texts = self._inner.generate(request)
            self._description = copy.deepcopy(self._inner.describe())
        self._check()
        return texts

    def _score(self, request: Any, texts: list[str]) -> list[float]:
        self._check()
        with self._lock:
            return self._inner.score(request, texts)

    def describe(self) -> dict[str, Any]:
        if self._description is not None:
            return self._description
        with self._lock:
            return copy.deepcopy(self._inner.describe())

    def stream(self, request: Any) -> Iterator[str]:
        pieces = None  # created under the lock below
        while True:
            self._check()
            with self._lock:
                if pieces is None:
                    pieces = iter(self._inner.stream(request))
                try:
                    piece = next(pieces)
                except StopIteration:
                    return
            yield piece

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:  # tokenizer, name, ...
        return getattr(self._inner, name)


class SharedGenerators(GeneratorCache):
    """The process's models: each loaded once, with one lock each; ``cancel`` stops jobs at shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._locks: dict[tuple, FairLock] = {}
        self.cancel = threading.Event()

    @staticmethod
    def key(plan_: Any) -> tuple:
        return (getattr(plan_.generator, "name", type(plan_.generator).__name__), plan_.model_name, plan_.device,
                plan_.dtype)

    def loaded(self, plan_: Any) -> tuple[Any, FairLock]:
        with self._guard:  # loading is rare; one at a time
            inner = GeneratorCache.get(self, plan_)
            lock = self._locks.setdefault(self.key(plan_), FairLock())
        return inner, lock

    def get(self, plan_: Any) -> Guarded:
        """The pipeline's view (``run_pipeline(generators=...)``): locked and cancellable."""
        inner, lock = self.loaded(plan_)
        return Guarded(inner, lock, self.cancel)

    def for_api(self, plan_: Any) -> Guarded:
        inner, lock = self.loaded(plan_)
        return Guarded(inner, lock, None)

    def is_loaded(self, plan_: Any) -> bool:
        return self.key(plan_) in self._loaded


@dataclass(frozen=True)
class ServedModel:
    """One allowlisted model: ``id`` is what clients name (``tang``; ``hf:/models/x`` for other generators)."""

    id: str
    generator: str
    name: str


def parse_model_entry(entry: str) -> ServedModel:
    entry = entry.strip()
    if not entry:
        raise ConfigError("an empty --model entry")
    generator, sep, name = entry.partition(":")
    if sep and generator.isidentifier() and name and not (len(generator) == 1 and name.startswith(("\\", "/"))):
        return ServedModel(id=entry, generator=generator, name=name)
    return ServedModel(id=entry, generator="transformer", name=entry)


class Models:
    """The allowlist of served models over the shared generator cache."""

    def __init__(self, registry: Any, base_config: dict[str, Any], entries: list[str],
                 generators: SharedGenerators, worker_generators: SharedGenerators | None = None) -> None:
        self.registry = registry
        self.base = base_config
        self.generators = generators  # the API's
        self.worker_generators = worker_generators or generators
        self.served: dict[str, ServedModel] = {}
        for entry in entries:
            model = parse_model_entry(entry)
            registry.generator(model.generator)  # unknown generator: one clear error at start
            if model.generator == "transformer":
                registry.resolve_checkpoint(model.name)
            self.served[model.id] = model

    def resolve(self, model_id: str) -> ServedModel:
        model = self.served.get(str(model_id))
        if model is None:
            raise ConfigError(f"model '{model_id}' is not served here; served models: {', '.join(self.served)}")
        return model

    def allowed_name(self, generator: str, name: str) -> bool:
        return any(m.generator == generator and m.name == name for m in self.served.values())

    def plan_for(self, model: ServedModel) -> Any:
        """What ``GeneratorCache`` needs to load a model: generator, name, device, dtype, threads."""
        cfg = dict(self.base.get("model") or {})
        return SimpleNamespace(generator=self.registry.generator(model.generator), model_name=model.name,
                               device=str(cfg.get("device", "cpu")), dtype=str(cfg.get("dtype", "float32")),
                               threads=int(cfg.get("threads", 0) or 0),
                               config={"model": {**cfg, "generator": model.generator, "name": model.name}})

    def get(self, model_id: str) -> Guarded:
        return self.generators.for_api(self.plan_for(self.resolve(model_id)))

    def preload(self) -> None:
        """Load every served model now, for the API and for the job worker."""
        for model in self.served.values():
            plan_ = self.plan_for(model)
            self.generators.loaded(plan_)
            self.worker_generators.loaded(plan_)

    def is_loaded(self, model: ServedModel) -> bool:
        return self.generators.is_loaded(self.plan_for(model))
