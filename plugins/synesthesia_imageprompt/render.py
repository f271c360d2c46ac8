"""The ``imageprompt`` renderer: writes the prompt in the formats diffusion tools read, and the sketch."""

from __future__ import annotations

from pathlib import Path

from synesthesia.components import RenderContext
from synesthesia.fileio import write_atomic, write_json_atomic

from . import clip_tokens, comfyui, imagery, prompt, sketch

SEED_MODULUS = 2**32  # A1111 and diffusers' torch.Generator take 32-bit seeds; ComfyUI accepts them too


def write_json(path: Path, data) -> Path:
    # default=str: a manifest may hold paths or dates, which JSON has no type for.
    return write_json_atomic(path, data, default=str)


def a1111_parameters(built: prompt.BuiltPrompt, options: prompt.ImagePromptOptions) -> str:
    """The "parameters" text A1111 stores in its PNGs and reads back with PNG Info / "Read generation parameters"."""
    sampler = prompt.SAMPLERS[options.sampler][0]
    model = Path(options.checkpoint).stem
    return (
        f"{built.prompt}\n"
        f"Negative prompt: {built.negative}\n"
        f"Steps: {options.steps}, Sampler: {sampler}, CFG scale: {options.cfg:g}, Seed: {built.seed}, "
        f"Size: {options.width}x{options.height}, Model: {model}\n"
    )


def diffusers_kwargs(built: prompt.BuiltPrompt, options: prompt.ImagePromptOptions) -> dict:
    """Keyword arguments for a diffusers text-to-image pipeline (plain text: diffusers reads no weights).

    ``seed`` is not a pipeline argument: pop it and pass ``generator=torch.Generator().manual_seed(seed)``.
    """
    return {
        "prompt": built.plain,
        "negative_prompt": built.negative,
        "num_inference_steps": options.steps,
        "guidance_scale": options.cfg,
        "width": options.width,
        "height": options.height,
        "seed": built.seed,
    }


def theme_use(theme: imagery.ThemeImagery, built: prompt.BuiltPrompt) -> dict:
    """How the artist's theme was used: its English phrase, where each part came from, and that it leads."""
    return {
        "theme": theme.theme,
        "language": theme.language,
        "phrase": theme.phrase,
        "parts": theme.parts,
        "leads_prompt": bool(built.theme),
        "prompt_piece": built.theme,
    }


def render(context: RenderContext) -> list[Path]:
    options = context.options if isinstance(context.options, prompt.ImagePromptOptions) else (
        prompt.ImagePromptOptions.model_validate(context.options or {})
    )
    seed = (options.seed if options.seed is not None else int(context.seed)) % SEED_MODULUS
    found = imagery.extract(context.text, context.language)
    theme = imagery.theme_imagery(getattr(context, "theme", ""))
    built = prompt.build(found, options, seed, theme)
    out = Path(context.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"style": built.style, "seed": seed, "prompt": built.prompt, "negative_prompt": built.negative,
               "theme": theme_use(theme, built)}
    manifest = {**context.manifest, "imageprompt": summary}
    _, comfy_sampler, comfy_scheduler, _ = prompt.SAMPLERS[options.sampler]

    files = [
        write_atomic(out / "prompt.txt", built.prompt + "\n"),
        write_atomic(out / "a1111_parameters.txt", a1111_parameters(built, options)),
        write_json(out / "comfyui_workflow.json", comfyui.build_workflow(
            prompt=built.prompt, negative=built.negative, seed=seed, steps=options.steps, cfg=options.cfg,
            sampler_name=comfy_sampler, scheduler=comfy_scheduler, width=options.width, height=options.height,
            checkpoint=options.checkpoint, filename_prefix="synesthesia", manifest=manifest,
        )),
        write_json(out / "diffusers_kwargs.json", diffusers_kwargs(built, options)),
        write_json(out / "variations.json", {
            "template": built.template,
            "mode": options.variation_mode,
            "seed": seed,
            "prompts": [{"prompt": v, "clip_tokens": clip_tokens.count_tokens(v)} for v in built.variations],
        }),
        write_json(out / "imagery.json", {
            **found.to_json(),
            "style": built.style,
            "seed": seed,
            "clip_tokens": built.tokens,
            "negative_clip_tokens": built.negative_tokens,
            "token_budget": options.token_budget,
            "kept": built.kept,
            "dropped_for_token_budget": built.dropped,
            "theme": theme_use(theme, built),
        }),
    ]
    if options.sketch:
        ink = prompt.styles()[built.style]["sketch"] == "ink"  # auto style: ink wash for classical Chinese
        seal = built.style == "ink-wash" or (ink and found.language == "zh")
        picture = sketch.draw(found, width=options.width, height=options.height, seed=seed, ink=ink, seal=seal)
        files.append(sketch.save_png(picture, out / "sketch.png", manifest))
    return files
