"""What the CLI commands do: the Hydra app behind ``synesthesia run``, quick generation, plugin listing."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from synesthesia.errors import SynesthesiaError


def _searchpath_override(extra: list[str], argv: list[str]) -> list[str]:
    """Plugins' config folders join Hydra's search path (unless the user set it explicitly)."""
    if not extra or any(a.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for a in argv):
        return argv
    return argv + ["hydra.searchpath=[" + ",".join(extra) + "]"]


def run_hydra_app(argv: list[str]) -> None:
    """Run ``synesthesia run`` as a Hydra app (overrides, --multirun, launchers, --cfg, --help)."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    from synesthesia.config import CONFIG_MODULE, register_configs
    from synesthesia.plugins import get_registry

    register_configs()
    registry = get_registry()

    def job(cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from synesthesia.pipeline import run_pipeline

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        config = OmegaConf.to_container(cfg, resolve=True)
        try:
            artwork = run_pipeline(config, run_dir, registry=registry,
                                   log=lambda m: print(m, file=sys.stderr))
        except SynesthesiaError as exc:
            if os.environ.get("SYNESTHESIA_DEBUG") == "1":
                raise
            print(f"Error: {exc}", file=sys.stderr)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                return None  # one bad job in a sweep does not stop the others
            sys.exit(1)
        print(f"artwork: {artwork.path}")
        return str(artwork.path)

    main = hydra.main(version_base=None, config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(job)
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


def hydra_error_line(exc: BaseException) -> str:
    """One line for what Hydra or OmegaConf rejected (an unknown key, a value of the wrong type, a run
    folder that cannot be written) instead of their multi-line reports."""
    import re

    from synesthesia.fileio import DISK_ERRORS

    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if len(chain) > 8:
            break
    for error in chain:
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return (f"cannot write the run folder {error.filename or ''}: {error.strerror}; choose another "
                    "hydra.run.dir or fix its permissions (nothing was written)").replace("  ", " ")
    text = " ".join(str(e) for e in chain[:2] if str(e))
    key = re.search(r"full_key: ([\w.\[\]]+)", text)
    if re.search(r"Key '[^']+' is not in struct|Could not override '[^']+'", text) and key:
        return f"unknown setting '{key.group(1)}'; `synesthesia run --cfg job` lists the settings"
    converted = re.search(r"Value '(.*?)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if converted and key:
        return f"{key.group(1)}: '{converted.group(1)}' is not a valid {converted.group(2).lower()}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return re.sub(r"\s+", " ", first)


def generate_streaming(*, prompt: str, form_name: str, theme: str, model_name: str, seed: int,
                       temperature: float, top_k: int, top_p: float, max_tokens: int, constrained: bool) -> str:
    """Stream one candidate to stdout; report the form's verdict on stderr. Returns the text."""
    from synesthesia.components import GenerationRequest, SamplingSettings
    from synesthesia.config import ModelConfig
    from synesthesia.pipeline import load_generator, plan

    config = {"form": form_name, "theme": theme, "prompt": prompt, "seed": seed,
              "model": {"generator": "transformer", "name": model_name,
                        "auto": ModelConfig().auto, "threads": 1},
              "generation": {"temperature": temperature, "top_k": top_k or None, "top_p": top_p,
                             "max_new_tokens": max_tokens, "constrained": constrained},
              "pipeline": {"renderers": []}}
    plan_ = plan(config)
    loaded = load_generator(plan_)
    form = plan_.form
    request = GenerationRequest(
        conditioning=form.conditioning(plan_.request),
        sampling=SamplingSettings(**{**plan_.sampling.__dict__}),
        make_logits_processors=(lambda tok: form.logits_processors(tok, plan_.request))
        if constrained and form.logits_processors else None,
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


def plugin_listing() -> dict[str, Any]:
    """Name, version, hooks and registrations of every plugin; for ``synesthesia plugins``."""
    from synesthesia.plugins import get_registry

    registry = get_registry()
    kinds = {"generators": ("register_generators", registry.generators),
             "forms": ("register_forms", registry.forms),
             "renderers": ("register_renderers", registry.renderers),
             "checkpoints": ("register_checkpoints", registry.checkpoints)}
    owned: dict[str, dict[str, list[str]]] = {}
    for kind, (hook, collect) in kinds.items():
        for name in collect():
            owner = registry.owner(hook, name)
            owned.setdefault(owner or "?", {}).setdefault(kind, []).append(name)
    plugins = []
    for info in sorted(registry.plugins.values(), key=lambda p: p.name):
        plugins.append({"name": info.name, "version": info.version, "module": info.module, "hooks": info.hooks,
                        "error": info.error, **{k: sorted(v) for k, v in owned.get(info.name, {}).items()}})
    return {"plugins": plugins}
