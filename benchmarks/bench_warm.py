"""Warm pipeline latency: the model and plugins loaded once per process, then artworks and streams as a
long-lived process (``synesthesia serve``, an installation loop) sees them.

In one process, through the public pipeline API (``compose_run_config``, ``plan``, ``GeneratorCache``,
``run_pipeline(..., generators=)``), with the shipped models and the defaults ``synesthesia run`` uses:

- cold: the first 七绝 artwork with every renderer (plugins found, model loaded, first decode); the config
  of each form is composed once beforehand (as ``synesthesia serve`` composes its base config once) and a
  request sets its theme and seed in a copy;
- warm first streamed character: a 七绝 (``tang``) and a haiku (``verse``) streamed as ``synesthesia generate``
  does (one candidate), seconds from the request until the first character the model decoded (a form's
  fixed prefix, if any, comes earlier and is not counted);
- warm 七绝 with all renderers: ``run_pipeline`` into a fresh folder (every renderer, default candidates
  and attempts), seconds per artwork, a different theme each time, with the manifest's breakdown (generate,
  render, each renderer).

Goals (issue 13, on the 2-core CPU): warm first character <= 0.3 s, warm 七绝 with all renderers <= 2.5 s.
Medians and worst of ``--repeats`` (themes cycle); the CPU model, torch version and threads are printed.

Run: ``.venv/bin/python benchmarks/bench_warm.py [--repeats 5] [--dtype float32]`` (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

THEMES_ZH = ["秋月", "江雪", "春雨", "夜泊", "桃花", "長城", "山居"]
THEMES_EN = ["winter sea", "harbor at dawn", "autumn moon", "old bridge", "rain"]
GOAL_FIRST_CHAR, GOAL_ARTWORK = 0.3, 2.5


def base_config(overrides: list[str]) -> dict:
    """The config ``synesthesia run OVERRIDES`` composes: once per form, as a server composes its base config
    once (Hydra's compose takes ~0.5-1 s; a request only changes a few values of the composed dict)."""
    from synesthesia.config import compose_run_config

    return compose_run_config(overrides)


def request_config(base: dict, theme: str, seed: int, renderers: list[str] | None = None) -> dict:
    config = copy.deepcopy(base)
    config["theme"], config["seed"] = theme, seed
    if renderers is not None:
        config.setdefault("pipeline", {})["renderers"] = renderers
    return config


def first_character(generators, config: dict) -> float:
    """Seconds from the request until the first character the model decoded (as ``synesthesia generate``)."""
    from synesthesia.components import GenerationRequest
    from synesthesia.pipeline import plan, processors_for

    start = time.perf_counter()
    plan_ = plan(config)
    loaded = generators.get(plan_)
    form = plan_.form
    request = GenerationRequest(conditioning=form.conditioning(plan_.request), sampling=plan_.sampling,
                                make_logits_processors=processors_for(form, plan_.request, plan_.constrained))
    prefix = request.conditioning.prefix or ""
    seconds = None
    stream = loaded.stream(request)
    for piece in stream:
        if prefix and piece == prefix:
            continue  # the form's fixed opening: no decoding behind it
        if piece.strip():
            seconds = time.perf_counter() - start
            break
    stream.close()
    if seconds is None:
        raise SystemExit(f"bench_warm: {config.get('form')} streamed no character")
    return seconds


def artwork(generators, config: dict, folder: Path) -> tuple[float, dict]:
    """Seconds for one artwork, and its manifest's timings (generate, render, each renderer)."""
    from synesthesia.pipeline import run_pipeline

    start = time.perf_counter()
    run_pipeline(config, folder, log=lambda *a, **k: None, generators=generators)
    seconds = time.perf_counter() - start
    manifest = json.loads((folder / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    parts = {k: v for k, v in (manifest.get("timings") or {}).items() if isinstance(v, (int, float))}
    for name, entry in (manifest.get("renderers") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("seconds"), (int, float)):
            parts[f"render {name}"] = entry["seconds"]
    parts["dtype"] = (manifest.get("model") or {}).get("inference_dtype")
    return seconds, parts


def line(label: str, values: list[float], goal: float | None = None) -> str:
    median = statistics.median(values)
    verdict = "" if goal is None else f"  goal <= {goal:.1f} s: {'met' if median <= goal else 'NOT met'}"
    return f"{label:<44}{median:>8.3f}{max(values):>8.3f}{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default=None, help="model.dtype for every run (default: the config's)")
    args = parser.parse_args()
    extra = [f"model.dtype={args.dtype}"] if args.dtype else []

    import torch

    from synesthesia.pipeline import GeneratorCache

    generators = GeneratorCache()
    zh_base, en_base = base_config(["form=七绝", *extra]), base_config(["form=haiku", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cold, _ = artwork(generators, request_config(zh_base, "秋月", 0), root / "cold")
        first_character(generators, request_config(en_base, "rain", 0))  # loads verse: cold, not counted
        zh, en, warm, parts, dtypes = [], [], [], {}, set()
        for i in range(args.repeats):
            zh.append(first_character(generators, request_config(zh_base, THEMES_ZH[i % len(THEMES_ZH)], i)))
            en.append(first_character(generators, request_config(en_base, THEMES_EN[i % len(THEMES_EN)], i)))
            seconds, timings = artwork(generators, request_config(zh_base, THEMES_ZH[(i + 1) % len(THEMES_ZH)], i),
                                       root / f"warm{i}")
            warm.append(seconds)
            dtypes.add(str(timings.pop("dtype")))
            for name, value in timings.items():
                parts.setdefault(name, []).append(value)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; inference dtype "
          f"{', '.join(sorted(dtypes))}; {args.repeats} warm repeats")
    print(f"{'':<44}{'median':>8}{'worst':>8}")
    print(line("cold 七绝, all renderers (load included)", [cold]))
    print(line("warm first streamed character, 七绝 (tang)", zh, GOAL_FIRST_CHAR))
    print(line("warm first streamed character, haiku (verse)", en, GOAL_FIRST_CHAR))
    print(line("warm 七绝, all renderers", warm, GOAL_ARTWORK))
    for name, values in sorted(parts.items(), key=lambda item: -statistics.median(item[1])):
        if name != "total":
            print(line(f"  of which {name}", values))


if __name__ == "__main__":
    main()
