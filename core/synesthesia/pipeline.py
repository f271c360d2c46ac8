"""The pipeline: intent → candidates → the best valid text → every renderer → manifest, written atomically.

An artwork is a folder::

    RUN_DIR/artwork/text.txt          the text (the artist may edit it, then `synesthesia render RUN_DIR`)
    RUN_DIR/artwork/manifest.json     how it was made: prompt, config, model checksum, seed, plugins, files
    RUN_DIR/artwork/<renderer>/...    each renderer's files
    RUN_DIR/revisions/rev-001/...     earlier revisions, kept by `synesthesia render`

The folder is built under a staging name and renamed into place at the end, so a crash never leaves a
half-written artwork: ``artwork/`` is either the old complete one or the new complete one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synesthesia import __version__
from synesthesia.components import (
    Artwork,
    Form,
    FormRequest,
    GenerationRequest,
    RenderContext,
    Renderer,
    SamplingSettings,
    Validation,
)
from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.fileio import (
    DISK_ERRORS,
    process_alive,
    read_json,
    sha256_file,
    swap_into_place,
    write_atomic,
    write_json_atomic,
)
from synesthesia.plugins import Registry, get_registry, validate_options
from synesthesia.theme import text_quality, theme_coverage, understand_theme

ARTWORK_DIR = "artwork"
REVISIONS_DIR = "revisions"
TEXT_FILE = "text.txt"
MANIFEST_FILE = "manifest.json"


# --------------------------------------------------------------------------------------------------
# Small file helpers


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# The plan: everything checked before any work starts


@dataclass
class Plan:
    form: Form
    request: FormRequest
    generator: Any
    model_name: str
    device: str
    threads: int
    dtype: str
    renderers: list[tuple[Renderer, Any]]  # (renderer, validated options)
    sampling: SamplingSettings
    candidates: int
    max_attempts: int
    constrained: bool
    config: dict[str, Any]
    theme: Any = None  # synesthesia.theme.ThemeUnderstanding


def _choose_renderers(registry: Registry, names: list[str], language: str | None) -> list[Renderer]:
    if list(names) == ["all"]:
        return [
            r for _, r in sorted(registry.renderers().items())
            if r.languages is None or language is None or language in r.languages
        ]
    return [registry.renderer(name) for name in names]


MAX_TEXT_CHARS = 20_000  # what `render` lays out: a 1 MB text kept the layouts busy for minutes
MAX_CANDIDATES = 256  # decoded as one batch: 256 × 4096 tokens of a small model's cache is ~1 GB
MAX_ATTEMPTS = 20
MAX_NEW_TOKENS = 4096


def check_device(device: str) -> None:
    """One clear line for a device this machine cannot use (before any model is loaded)."""
    if device == "cpu":
        return
    if not re.fullmatch(r"cuda(?::\d+)?|mps", device):
        raise ConfigError(f"model.device must be cpu, cuda, cuda:N or mps, not '{device}'")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device={device}: this machine has no CUDA device; use model.device=cpu")
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(f"model.device={device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device=mps: this machine has no Apple GPU; use model.device=cpu")


def plan(config: Mapping[str, Any], registry: Registry | None = None) -> Plan:
    """Check the whole config against the registered plugins; raise ConfigError before any work.

    A partial config (a test's, a benchmark's) gets ``synesthesia run``'s defaults for what it leaves out."""
    from synesthesia.config import with_defaults

    registry = registry or get_registry()
    cfg = with_defaults(config)
    form = registry.form(str(cfg["form"]))
    for key in ("theme", "prompt", "title"):
        try:
            str(cfg.get(key) or "").encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{key} holds bytes that are not text (not UTF-8); type it again or check the "
                              "terminal's encoding") from None
    request = FormRequest(theme=str(cfg.get("theme") or ""), prompt=str(cfg.get("prompt") or ""),
                          options=dict(cfg.get("form_options") or {}))
    theme = understand_theme(request.theme, form.language)
    request.keywords = theme.keywords
    model_cfg = dict(cfg.get("model") or {})
    generator = registry.generator(str(model_cfg["generator"]))
    model_name = str(model_cfg["name"])
    if model_name == "auto":
        choices = dict(model_cfg.get("auto") or {})  # by form name first, then by language
        model_name = str(choices.get(form.name) or choices.get(form.language or "default")
                         or choices.get("default") or "")
        if not model_name:
            raise ConfigError(f"model.name=auto has no model for language '{form.language}'; set model.name=...")
    renderer_options = dict(cfg.get("renderer") or {})
    pipeline_cfg = dict(cfg.get("pipeline") or {})
    renderers = _choose_renderers(registry, list(pipeline_cfg["renderers"]), form.language)
    unknown = set(renderer_options) - set(registry.renderers())
    if unknown:
        raise ConfigError(f"options given for unknown renderer(s) {', '.join(sorted(unknown))}; "
                          f"available: {', '.join(sorted(registry.renderers()))}")
    validated = [(r, validate_options(r, renderer_options.get(r.name))) for r in renderers]
    gen = dict(cfg.get("generation") or {})
    max_new = int(gen.get("max_new_tokens") or 0) or int(form.max_new_tokens or SamplingSettings.max_new_tokens)
    sampling = SamplingSettings(
        temperature=gen["temperature"],
        top_k=gen["top_k"],
        top_p=gen["top_p"],
        min_p=gen["min_p"],
        repetition_penalty=gen["repetition_penalty"],
        max_new_tokens=max_new,
        stop=list(gen.get("stop") or []) + list(form.stop),
        seed=int(cfg["seed"]),
    )
    from synesthesia.sampling import check_settings

    check_settings(sampling)  # before any work, not after the model has loaded
    candidates = int(gen["candidates"])
    attempts = int(gen["max_attempts"])
    if candidates < 1 or attempts < 1:
        raise ConfigError("generation.candidates and generation.max_attempts must be at least 1")
    if candidates > MAX_CANDIDATES or attempts > MAX_ATTEMPTS or max_new > MAX_NEW_TOKENS:
        raise ConfigError(f"generation.candidates ≤ {MAX_CANDIDATES}, generation.max_attempts ≤ {MAX_ATTEMPTS} and "
                          f"generation.max_new_tokens ≤ {MAX_NEW_TOKENS}, got {candidates}, {attempts}, {max_new}: "
                          "candidates are decoded together, so memory grows with their product")
    check_device(str(model_cfg["device"]))
    from synesthesia.hardware import check_dtype

    check_dtype(str(model_cfg["dtype"]), "inference", "model.dtype")  # auto: resolved at load
    return Plan(form=form, request=request, generator=generator, model_name=model_name,
                device=str(model_cfg["device"]), threads=int(model_cfg["threads"] or 0),
                dtype=str(model_cfg["dtype"]),
                renderers=validated, sampling=sampling,
                candidates=candidates, max_attempts=attempts, constrained=bool(gen["constrained"]),
                config=cfg, theme=theme)


# --------------------------------------------------------------------------------------------------
# Writing


def choose_best(form: Form, texts: list[str], request: FormRequest | None, *,
                likelihoods: list[float | None] | None = None,
                theme: Any = None) -> tuple[int, list[Validation], list[dict[str, Any]]]:
    """Index of the best candidate, every verdict, and every candidate's ranking scores.

    Candidates are ranked by form validity, then theme coverage (``synesthesia.theme.theme_coverage``
    of ``theme``, a ``ThemeUnderstanding``), then quality: the model's mean log-likelihood per token
    (when the generator can score texts) minus penalties for filler and repetition, then the form's score.
    """
    verdicts = [form.validate(t, request) for t in texts]
    likelihoods = likelihoods or [None] * len(texts)
    scores = []
    for text, verdict, likelihood in zip(texts, verdicts, likelihoods):
        quality = text_quality(text, form.language)
        scores.append({"form_score": round(float(verdict.score), 4),
                       "coverage": round(theme_coverage(text, theme), 4) if theme is not None else 0.0,
                       "loglik": None if likelihood is None else round(float(likelihood), 4),
                       "filler": round(quality["filler"], 4), "repetition": round(quality["repetition"], 4),
                       "quality": round((likelihood or 0.0) - quality["penalty"], 4)})
    best = max(range(len(texts)),
               key=lambda i: (verdicts[i].ok, scores[i]["coverage"], scores[i]["quality"], verdicts[i].score, -i))
    return best, verdicts, scores


def processors_for(form: Form, request: FormRequest, constrained: bool = True) -> Callable[[Any], list] | None:
    """``GenerationRequest.make_logits_processors`` for ``form``: its processors built with the generator's
    tokenizer, or None when the form has none or decoding is unconstrained."""
    make = form.logits_processors
    if not constrained or make is None:
        return None
    return lambda tokenizer: make(tokenizer, request)


def write_candidates(plan_: Plan, loaded: Any, log=print) -> tuple[str, Validation, list[dict[str, Any]]]:
    """Generate rounds of candidates until one is valid; return the chosen text and the candidate log.

    Candidates are ranked by ``choose_best``; a generator with a ``score(request, texts)`` method (mean
    log-likelihood per token) contributes the model's likelihood to the ranking.
    """
    history: list[dict[str, Any]] = []
    best: tuple | None = None
    best_text, best_verdict = "", Validation(ok=False, score=-1.0)
    scorer = getattr(loaded, "score", None)
    for attempt in range(plan_.max_attempts):
        settings = SamplingSettings(**{**asdict(plan_.sampling), "seed": plan_.sampling.seed + attempt})
        request = GenerationRequest(
            conditioning=plan_.form.conditioning(plan_.request),
            sampling=settings,
            n=plan_.candidates,
            make_logits_processors=processors_for(plan_.form, plan_.request, plan_.constrained),
        )
        raw = loaded.generate(request)
        texts = [plan_.form.finalize(t) if plan_.form.finalize else t.strip() for t in raw]
        likelihoods = scorer(request, texts) if callable(scorer) else None
        index, verdicts, scores = choose_best(plan_.form, texts, plan_.request, likelihoods=likelihoods,
                                              theme=plan_.theme)
        for text, verdict, score in zip(texts, verdicts, scores):
            history.append({"attempt": attempt, "seed": settings.seed, "text": text, "ok": verdict.ok,
                            "score": round(float(verdict.score), 4), "problems": verdict.problems, **score})
        key = (verdicts[index].ok, scores[index]["coverage"], scores[index]["quality"], verdicts[index].score)
        if best is None or key > best:
            best, best_text, best_verdict = key, texts[index], verdicts[index]
        if best_verdict.ok:
            break
    if not best_verdict.ok:
        log(f"warning: no candidate obeys form '{plan_.form.name}' after {plan_.max_attempts} round(s); "
            f"keeping the best-scoring one ({'; '.join(best_verdict.problems[:3])})")
    return best_text, best_verdict, history


def describe_model(loaded: Any, request: GenerationRequest) -> dict[str, Any]:
    """The manifest's ``model``: the generator's ``describe()``, and what it made of the request (its
    optional ``describe_request(request)``: theme words mapped, a primer)."""
    described = dict(loaded.describe())
    per_request = getattr(loaded, "describe_request", None)
    if callable(per_request):
        described.update(per_request(request))
    return described


def load_generator(plan_: Plan) -> Any:
    """Load the planned model, with the planned number of CPU threads."""
    if plan_.threads > 0:
        import torch

        torch.set_num_threads(plan_.threads)
    return plan_.generator.load(plan_.model_name, device=plan_.device, dtype=plan_.dtype, **_generator_options(plan_))


def _generator_options(plan_: Plan) -> dict[str, Any]:
    """The more ``model.*`` options a generator takes (openai: base_url, api_key_env), named in its ``options``."""
    model_cfg = dict(plan_.config.get("model") or {})
    return {k: model_cfg[k] for k in getattr(plan_.generator, "options", ()) if model_cfg.get(k) is not None}


class GeneratorCache:
    """Models loaded once per process, for long-lived processes (a server, an installation loop): keyed by
    generator, model, device, dtype and the generator's own options (two endpoints never share an entry).
    Not thread-safe for decoding: run one pipeline at a time per model."""

    def __init__(self) -> None:
        self._loaded: dict[tuple, Any] = {}

    def get(self, plan_: Plan) -> Any:
        key = (getattr(plan_.generator, "name", type(plan_.generator).__name__), plan_.model_name, plan_.device,
               plan_.dtype, tuple(sorted((k, str(v)) for k, v in _generator_options(plan_).items())))
        if key not in self._loaded:
            self._loaded[key] = load_generator(plan_)
        elif plan_.threads > 0:
            import torch

            torch.set_num_threads(plan_.threads)
        return self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


def plugin_versions(registry: Registry) -> list[dict[str, Any]]:
    return [{"name": p.name, "version": p.version, "module": p.module}
            for p in sorted(registry.plugins.values(), key=lambda p: p.name) if p.error is None]


def render_into(staging: Path, text: str, manifest: dict[str, Any], renderers: list[tuple[Renderer, Any]],
                *, fail_on_error: bool, log=print) -> dict[str, Any]:
    """Run every renderer into ``staging/<name>``; return the per-renderer manifest section."""
    section: dict[str, Any] = {}
    intent = manifest.get("intent", {})
    for renderer, options in renderers:
        out_dir = staging / renderer.name
        out_dir.mkdir(parents=True, exist_ok=True)
        context = RenderContext(
            text=text, form=intent.get("form", ""), language=intent.get("language"),
            theme=intent.get("theme", ""), seed=int(manifest.get("seed", 0)), out_dir=out_dir,
            options=options, manifest=manifest, title=intent.get("title", ""),
            model_name=str(manifest.get("model", {}).get("name", "")),
        )
        started = time.perf_counter()
        entry: dict[str, Any] = {"options": options.model_dump(mode="json") if hasattr(options, "model_dump") else {}}
        try:
            renderer.render(context)
            entry["error"] = None
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
                raise  # a full or read-only disk is no renderer's fault: the whole artwork stops, unharmed
            if fail_on_error:
                raise SynesthesiaError(f"renderer '{renderer.name}' failed: {exc}") from exc
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log(f"warning: renderer '{renderer.name}' failed, the others still render: {entry['error']}")
        entry["seconds"] = round(time.perf_counter() - started, 3)
        section[renderer.name] = entry
    return section


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE
    }


_LEFTOVER = re.compile(rf"^\.(?:{ARTWORK_DIR}-staging|{ARTWORK_DIR}-old|rev-\d+-staging)-(\d+)(?:-\d+)?$")


def remove_stale_staging(run_dir: Path) -> list[Path]:
    """Delete half-built folders that a killed process left (``.artwork-staging-PID-…``, ``.rev-N-staging-PID``)
    in ``run_dir`` and its ``revisions/``; a live process's are left alone. Returns what was removed."""
    removed = []
    for folder in (run_dir, run_dir / REVISIONS_DIR):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _LEFTOVER.match(entry.name)
            if match and entry.is_dir() and not process_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def new_staging(run_dir: Path) -> Path:
    """A fresh staging folder in ``run_dir`` for ``finish_artwork`` (leftovers of dead processes cleaned)."""
    remove_stale_staging(run_dir)
    staging = run_dir / f".{ARTWORK_DIR}-staging-{os.getpid()}-{time.time_ns()}"
    staging.mkdir(parents=True)
    return staging


def _publish(run_dir: Path, staging: Path, keep_previous_as: Path | None = None) -> Path:
    """Swap the staging folder in as ``artwork/``. The previous one is moved whole to ``keep_previous_as``
    (a run into a folder that already held an artwork), or deleted (``render`` kept a copy already)."""
    aside = keep_previous_as or run_dir / f".{ARTWORK_DIR}-old-{os.getpid()}-{time.time_ns()}"
    return swap_into_place(staging, run_dir / ARTWORK_DIR, aside=aside, keep_previous=keep_previous_as is not None)


@contextlib.contextmanager
def _disk_errors(run_dir: Path):
    """A folder that cannot be written (permissions, a read-only or full disk) is one line that says
    nothing was lost: artworks are built aside and swapped in whole, so the previous one still stands."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        where = exc.filename or run_dir
        raise SynesthesiaError(f"cannot write {where}: {DISK_ERRORS[exc.errno]}; nothing was lost (any earlier "
                               f"artwork in {run_dir} is untouched): free space or fix permissions and try again"
                               ) from None


class RunLock:
    """An exclusive lock on a run folder while an artwork is written or re-rendered, so two processes never
    write one artwork at once (the second is told so in one line, before any work)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".synesthesia.lock"
        self._handle: Any = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise SynesthesiaError(f"another synesthesia process is writing {self.path.parent}; "
                                   "wait for it to finish or choose another folder") from None
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def _revision_folders(run_dir: Path) -> list[int]:
    folder = run_dir / REVISIONS_DIR
    if not folder.is_dir():
        return []
    return [int(m.group(1)) for m in (re.fullmatch(r"rev-(\d+)", p.name) for p in folder.iterdir()) if m]


def _prior_artwork(run_dir: Path) -> tuple[int, dict[str, Any]] | None:
    """An artwork already in ``run_dir``: (the revision number it is kept as, its manifest or {})."""
    artwork = run_dir / ARTWORK_DIR
    if not artwork.exists():
        return None
    try:
        manifest = json.loads((artwork / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    revision = manifest.get("revision")
    revision = revision if isinstance(revision, int) and revision > 0 else 1
    taken = _revision_folders(run_dir)
    return (max([revision] + [n + 1 for n in taken]), manifest)


def finish_artwork(run_dir: Path, staging: Path, text: str, manifest: dict[str, Any],
                   renderers: list[tuple[Renderer, Any]], *, fail_on_error: bool, registry: Registry,
                   started: float | None = None, log=print, keep_previous_as: Path | None = None) -> Artwork:
    write_atomic(staging / TEXT_FILE, text if text.endswith("\n") else text + "\n")
    render_started = time.perf_counter()
    manifest["renderers"] = render_into(staging, text, manifest, renderers, fail_on_error=fail_on_error, log=log)
    manifest.setdefault("timings", {})["render"] = round(time.perf_counter() - render_started, 3)
    manifest["files"] = _file_hashes(staging)
    if started is not None:
        manifest["timings"]["total"] = round(time.perf_counter() - started, 3)
    write_json_atomic(staging / MANIFEST_FILE, manifest)
    path = _publish(run_dir, staging, keep_previous_as)
    files = [path / name for name in manifest["files"]] + [path / MANIFEST_FILE]
    artwork = Artwork(path=path, text=text, manifest=manifest, files=files)
    registry.notify_artwork_created(artwork)
    return artwork


def reproduce_command(config: Mapping[str, Any]) -> str:
    parts = ["synesthesia", "run", f"form={config.get('form')}", f"seed={config.get('seed', 0)}"]
    for key in ("theme", "prompt", "title"):
        if config.get(key):
            parts.append(f"{key}={json.dumps(str(config[key]), ensure_ascii=False)}")
    model = dict(config.get("model") or {})
    parts.append(f"model.name={model.get('name', 'auto')}")
    return " ".join(parts)


def run_pipeline(config: Mapping[str, Any], run_dir: Path, *, registry: Registry | None = None, log=print,
                 generators: GeneratorCache | None = None) -> Artwork:
    """Make one artwork into ``run_dir/artwork`` from a resolved config (a plain dict). With ``generators``
    (a long-lived process's cache) the model is loaded once, not once per artwork."""
    registry = registry or get_registry()
    started = time.perf_counter()
    plan_ = plan(config, registry)  # every check before any work
    run_dir = Path(run_dir).absolute()
    with _disk_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(run_dir):
            return _run_locked(plan_, config, run_dir, registry, log, generators, started)


def _run_locked(plan_: Plan, config: Mapping[str, Any], run_dir: Path, registry: Registry, log,
                generators: GeneratorCache | None, started: float) -> Artwork:
    timings: dict[str, float] = {}
    prior = _prior_artwork(run_dir)  # an artwork already here is kept whole, never overwritten
    if plan_.theme.unknown:
        log(f"note: theme word(s) not understood, left out: {', '.join(plan_.theme.unknown)}")
    t0 = time.perf_counter()
    loaded = generators.get(plan_) if generators is not None else load_generator(plan_)
    timings["load_model"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    text, verdict, history = write_candidates(plan_, loaded, log=log)
    timings["generate"] = round(time.perf_counter() - t0, 3)
    conditioning = plan_.form.conditioning(plan_.request)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "synesthesia_version": __version__,
        "created": created,
        "intent": {"form": plan_.form.name, "language": plan_.form.language, "theme": plan_.request.theme,
                   "prompt": plan_.request.prompt, "title": str(config.get("title") or ""),
                   "form_options": plan_.request.options},
        "theme": {**plan_.theme.to_dict(), "plan": plan_.form.plan(plan_.request) if plan_.form.plan else []},
        "conditioning": asdict(conditioning),
        "seed": plan_.sampling.seed,
        "model": describe_model(loaded, GenerationRequest(conditioning=conditioning, sampling=plan_.sampling)),
        "generation": {**asdict(plan_.sampling), "candidates": plan_.candidates,
                       "max_attempts": plan_.max_attempts, "constrained": plan_.constrained},
        "text": text,
        "text_sha256": sha256_text(text),
        "validation": asdict(verdict),
        "candidates": history,
        "config": dict(config),
        "plugins": plugin_versions(registry),
        "revision": 1,
        "revisions": [{"revision": 1, "source": "model", "created": created, "text_sha256": sha256_text(text)}],
        "reproduce": reproduce_command(config),
        "timings": timings,
    }
    keep = None
    if prior is not None:
        kept_as, old = prior
        keep = run_dir / REVISIONS_DIR / f"rev-{kept_as:03d}"
        history = [r for r in old.get("revisions", []) if isinstance(r, dict)]
        manifest["revision"] = kept_as + 1
        manifest["revisions"] = history + [{"revision": kept_as + 1, "source": "model", "created": created,
                                            "text_sha256": sha256_text(text),
                                            "previous": str(keep.relative_to(run_dir))}]
    staging = new_staging(run_dir)
    try:
        artwork = finish_artwork(run_dir, staging, text, manifest, plan_.renderers,
                                 fail_on_error=bool(dict(config.get("pipeline") or {}).get("fail_on_renderer_error")),
                                 registry=registry, started=started, log=log, keep_previous_as=keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if keep is not None:
        log(f"note: {run_dir} already held an artwork; it is kept whole in {keep} and this is revision "
            f"{manifest['revision']}")
    return artwork


# --------------------------------------------------------------------------------------------------
# The artist's revision loop


def find_artwork(path: Path) -> tuple[Path, Path]:
    """(run_dir, artwork_dir), absolute, for a run directory or an artwork folder; clear error otherwise."""
    path = Path(path).absolute()
    for run_dir, artwork in ((path, path / ARTWORK_DIR), (path.parent, path)):
        if (artwork / MANIFEST_FILE).is_file():
            return run_dir, artwork
    raise SynesthesiaError(f"no artwork at {path}: expected {path / ARTWORK_DIR / MANIFEST_FILE}; "
                           "give the run directory that `synesthesia run` printed")


def render_revision(path: Path, *, force: bool = False, registry: Registry | None = None, log=print) -> Artwork:
    """Re-render every medium from the (edited) ``text.txt``, keeping the previous revision."""
    registry = registry or get_registry()
    run_dir, artwork_dir = find_artwork(path)
    with _disk_errors(run_dir), RunLock(run_dir):
        return _render_locked(run_dir, artwork_dir, force, registry, log)


def _render_locked(run_dir: Path, artwork_dir: Path, force: bool, registry: Registry, log) -> Artwork:
    manifest = read_json(artwork_dir / MANIFEST_FILE, SynesthesiaError, f"restore it from {run_dir / REVISIONS_DIR}")
    if not isinstance(manifest, dict):
        raise SynesthesiaError(f"{artwork_dir / MANIFEST_FILE} is not an artwork manifest (a JSON object); "
                               f"restore it from {run_dir / REVISIONS_DIR}")
    text_path = artwork_dir / TEXT_FILE
    if not text_path.is_file():
        raise SynesthesiaError(f"{text_path} is missing; restore it or copy one from {run_dir / REVISIONS_DIR}")
    try:
        new_text = text_path.read_text(encoding="utf-8").strip("\n")
    except UnicodeDecodeError:
        raise SynesthesiaError(f"{text_path} is not UTF-8 text; save it as UTF-8 and render again") from None
    if not new_text.strip():
        raise SynesthesiaError(f"{text_path} is empty; write the text there, then run `synesthesia render` again")
    if len(new_text) > MAX_TEXT_CHARS:
        raise SynesthesiaError(f"{text_path} holds {len(new_text):,} characters; an artwork's text is at most "
                               f"{MAX_TEXT_CHARS:,} (a poem, a scene, a story fragment): shorten it and render again")
    old_text = str(manifest.get("text", ""))
    if new_text == old_text.strip("\n") and not force:
        log(f"{text_path} is unchanged since revision {manifest.get('revision', 1)}; nothing to re-render "
            "(use --force to render again anyway)")
        return Artwork(path=artwork_dir, text=old_text, manifest=manifest,
                       files=[artwork_dir / name for name in manifest.get("files", {})])
    config = dict(manifest.get("config") or {})
    renderer_options = dict(config.get("renderer") or {})
    names = [name for name in manifest.get("renderers", {})]
    renderers = [(r, validate_options(r, renderer_options.get(r.name))) for r in
                 (registry.renderer(name) for name in names)]

    # Keep the previous revision whole, with the text it was rendered from.
    revision = int(manifest.get("revision", 1))
    keep = run_dir / REVISIONS_DIR / f"rev-{revision:03d}"
    if not keep.exists():
        keep_staging = run_dir / REVISIONS_DIR / f".rev-{revision:03d}-staging-{os.getpid()}"
        shutil.copytree(artwork_dir, keep_staging)
        write_atomic(keep_staging / TEXT_FILE, old_text if old_text.endswith("\n") else old_text + "\n")
        os.replace(keep_staging, keep)

    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    intent = manifest.get("intent", {})
    form_name = intent.get("form", "")
    request = FormRequest(theme=intent.get("theme", ""), prompt=intent.get("prompt", ""),
                          options=dict(intent.get("form_options") or {}))
    try:
        verdict = asdict(registry.form(form_name).validate(new_text, request)) if form_name else None
    except ConfigError:
        verdict = None
    if verdict is not None and not verdict["ok"]:
        problems = verdict["problems"]
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        log(f"warning: the edited text does not obey form '{form_name}' ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): {'; '.join(problems[:3])}{more} (rendered anyway; all of "
            f"them are in {artwork_dir / MANIFEST_FILE} under validation.problems)")
    new_manifest = {
        **manifest,
        "text": new_text,
        "text_sha256": sha256_text(new_text),
        "validation": verdict,
        "revision": revision + 1,
        "revisions": list(manifest.get("revisions", [])) + [
            {"revision": revision + 1, "source": "edit", "created": created, "text_sha256": sha256_text(new_text),
             "previous": str(keep.relative_to(run_dir))}
        ],
        "plugins": plugin_versions(registry),
        "timings": {},
    }
    staging = new_staging(run_dir)
    try:
        return finish_artwork(run_dir, staging, new_text, new_manifest, renderers,
                              fail_on_error=bool(dict(config.get("pipeline") or {}).get("fail_on_renderer_error")),
                              registry=registry, log=log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
