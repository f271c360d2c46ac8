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
    saved = sys.argv
    sys.argv = ["synesthesia run"] + _searchpath_override(registry.config_paths(), argv)
    try:
        main()
    finally:
        sys.argv = saved


def generate_streaming(*, prompt: str, form_name: str, theme: str, model_name: str, seed: int,
                       temperature: float, top_k: int, top_p: float, max_tokens: int, constrained: bool) -> str:
    """Stream one candidate to stdout; report the form's verdict on stderr. Returns the text."""
    from synesthesia.components import GenerationRequest, SamplingSettings
    from synesthesia.pipeline import load_generator, plan

    config = {"form": form_name, "theme": theme, "prompt": prompt, "seed": seed,
              "model": {"generator": "transformer", "name": model_name,
                        "auto": {"screenplay": "shakespeare", "story": "shakespeare", "zh": "tang", "en": "verse",
                                 "default": "verse"}, "threads": 1},
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
