"""What the CLI commands do: the Hydra app behind ``synesthesia run``, quick generation, plugin listing."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from synesthesia.config import hydra_error_line
from synesthesia.errors import SynesthesiaError

__all__ = ["generate_streaming", "hydra_error_line", "plugin_listing", "run_hydra_app"]


def _searchpath_override(extra: list[str], argv: list[str]) -> list[str]:
    """Plugins' config folders join Hydra's search path (unless the user set it explicitly)."""
    if not extra or any(a.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for a in argv):
        return argv
    return argv + ["hydra.searchpath=[" + ",".join(extra) + "]"]


def run_hydra_app(argv: list[str], task: Any = None) -> None:
    """Run ``synesthesia run`` as a Hydra app (overrides, --multirun, launchers, --cfg, --help); ``task``
    replaces its job (``synesthesia batch`` runs ``synesthesia.batch.batch_job``)."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    from synesthesia.config import CONFIG_MODULE, register_configs
    from synesthesia.plugins import get_registry, option_defaults

    registry = get_registry()
    # Every renderer's options with their defaults in the composed config (`--cfg job` shows them).
    register_configs({name: option_defaults(r) for name, r in registry.renderers().items()})

    def job(cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from synesthesia.batch import process_generators
        from synesthesia.pipeline import run_pipeline

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        config = OmegaConf.to_container(cfg, resolve=True)
        log = _run_log()
        log(f"run: form={config.get('form')} theme={config.get('theme')!r} seed={config.get('seed')} "
            f"model={dict(config.get('model') or {}).get('name')} in {run_dir}", quiet=True)
        try:
            # A sweep's worker (this process, a joblib or Ray worker) loads each model once, not once per job.
            generators = process_generators() if hydra_cfg.mode == RunMode.MULTIRUN else None
            artwork = run_pipeline(config, run_dir, registry=registry, log=log, generators=generators)
        except SynesthesiaError as exc:
            log(f"Error: {exc}", quiet=True)
            if hydra_cfg.mode != RunMode.MULTIRUN:
                _remove_rejected_run(run_dir, hydra_cfg.output_subdir)
            if os.environ.get("SYNESTHESIA_DEBUG") == "1":
                raise
            print(f"Error: {exc}", file=sys.stderr)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                return None  # one bad job in a sweep does not stop the others (its folder records why)
            sys.exit(1)
        verdict = artwork.manifest.get("validation") or {}
        timings = artwork.manifest.get("timings") or {}
        log(f"{'obeys' if verdict.get('ok') else 'does not obey'} form '{config.get('form')}' "
            f"(score {verdict.get('score')}); timings {timings}", quiet=True)
        log(f"artwork: {artwork.path}", quiet=True)
        print(f"artwork: {artwork.path}")
        return str(artwork.path)

    main = hydra.main(version_base=None, config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(task or job)
    saved, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["synesthesia run"] + _searchpath_override(registry.config_paths(), argv)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own report: we print one line
    try:
        main()
    except (SynesthesiaError, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("SYNESTHESIA_DEBUG") == "1":
            raise
        raise SynesthesiaError(hydra_error_line(exc)) from None
    finally:
        sys.argv = saved
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error


def _run_log():
    """A run's messages: on stderr, and into the log file Hydra opened in the run folder (``app.log``), which
    thus records the run (what was asked, notes, warnings, the verdict, timings, the artwork or the error).
    ``quiet=True`` writes only to the file. Hydra's console handler is not used: a message is shown once."""
    import logging

    logger = logging.getLogger("synesthesia.run")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]

    def log(message: str, quiet: bool = False) -> None:
        if not quiet:
            print(message, file=sys.stderr)
        logger.info(message)

    return log


def _remove_rejected_run(run_dir: Path, output_subdir: str | None) -> None:
    """A run rejected before any artwork leaves no folder behind: what Hydra wrote there (its ``.hydra/``
    record, the log) and our lock go, then the folder and its empty parents inside the working directory.
    A folder that holds an artwork (a run into an existing one) or anything else is left as it is."""
    import logging
    import shutil

    from synesthesia.pipeline import ARTWORK_DIR, REVISIONS_DIR

    run_dir = run_dir.absolute()
    if not run_dir.is_dir() or (run_dir / ARTWORK_DIR).exists() or (run_dir / REVISIONS_DIR).exists():
        return
    root = logging.getLogger()
    logs = []
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            handler.close()
            root.removeHandler(handler)
            logs.append(Path(handler.baseFilename))
    logging.getLogger("synesthesia.run").handlers = []
    for path in logs + [run_dir / ".synesthesia.lock"]:
        path.unlink(missing_ok=True)
    if output_subdir:
        shutil.rmtree(run_dir / output_subdir, ignore_errors=True)
    cwd = Path.cwd().absolute()
    folder = run_dir
    while folder == run_dir or (folder != cwd and cwd in folder.parents):  # outputs/DATE/ too, if emptied
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break
        folder = folder.parent


def generate_streaming(overrides: list[str]) -> str:
    """Stream one candidate to stdout; report the form's verdict on stderr. Returns the text.

    The config is the one ``synesthesia run OVERRIDES`` composes (same defaults, same checks), decoded as
    a single candidate; no renderer runs."""
    from synesthesia.components import GenerationRequest
    from synesthesia.config import compose_run_config
    from synesthesia.pipeline import load_generator, plan, processors_for

    plan_ = plan(compose_run_config([*overrides, "pipeline.renderers=[]"]))
    loaded = load_generator(plan_)
    form = plan_.form
    request = GenerationRequest(
        conditioning=form.conditioning(plan_.request),
        sampling=plan_.sampling,
        make_logits_processors=processors_for(form, plan_.request, plan_.constrained),
    )
    pieces: list[str] = []
    for piece in loaded.stream(request):
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    text = form.finalize("".join(pieces)) if form.finalize else "".join(pieces).strip()
    verdict = form.validate(text, plan_.request)
    status = "obeys" if verdict.ok else "does not obey"
    detail = f": {'; '.join(verdict.problems)}" if verdict.problems else ""
    print(f"[{form.name}] {status} the form (score {verdict.score:.2f}){detail}", file=sys.stderr)
    return text


def hook_docs() -> dict[str, str]:
    """Every hook a plugin may implement, with its docstring (``synesthesia.hookspecs``)."""
    import inspect

    from synesthesia import hookspecs

    return {name: inspect.getdoc(obj) or "" for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(obj, "synesthesia_spec")}


def plugin_listing() -> dict[str, Any]:
    """For ``synesthesia plugins``: the hooks (with their docs); every plugin's name, version, hooks and
    registrations: forms (language, aliases, description), renderers (description, options with default,
    type and help), config groups; and the core's own config groups."""
    from dataclasses import asdict

    from synesthesia.config import CONFIG_MODULE
    from synesthesia.plugins import config_groups, get_registry, option_specs

    registry = get_registry()
    forms, renderers = registry.forms(), registry.renderers()
    # kind: (hook, {name: thing}, what the listing says of one); names alone under the kind, as before, and
    # the details of forms and renderers under form_details and renderer_details.
    describe = {
        "generators": ("register_generators", registry.generators(), None),
        "forms": ("register_forms", forms, lambda name, f: {
            "name": name, "language": f.language, "aliases": list(f.aliases), "description": f.description}),
        "renderers": ("register_renderers", renderers, lambda name, r: {
            "name": name, "description": r.description, "languages": list(r.languages) if r.languages else None,
            "options": [asdict(spec) for spec in option_specs(r.options)]}),
        "checkpoints": ("register_checkpoints", registry.checkpoints(), None),
        "config_groups": ("register_config_paths", {p: p for p in registry.config_paths()},
                          lambda name, path: {"path": path, "groups": config_groups(path)}),
    }
    owned: dict[str, dict[str, list[Any]]] = {}
    for kind, (hook, things, detail) in describe.items():
        for name, value in sorted(things.items()):
            mine = owned.setdefault(registry.owner(hook, name) or "?", {})
            if kind != "config_groups":
                mine.setdefault(kind, []).append(name)
            if detail is not None:
                key = kind if kind == "config_groups" else f"{kind[:-1]}_details"
                mine.setdefault(key, []).append(detail(name, value))
    plugins = []
    for info in sorted(registry.plugins.values(), key=lambda p: p.name):
        plugins.append({"name": info.name, "version": info.version, "module": info.module, "hooks": info.hooks,
                        "error": info.error, **owned.get(info.name, {})})
    core = f"pkg://{CONFIG_MODULE}"
    return {"hooks": hook_docs(), "plugins": plugins, "config_groups": {"path": core, "groups": config_groups(core)}}
