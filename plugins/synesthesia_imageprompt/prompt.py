"""From imagery to a diffusion prompt: style presets, weights, negative prompt, variations, token budget.

A prompt leads with the artist's theme (``imagery.theme_imagery``), then the poem's central images, then the
style's medium and the rest. A prompt is a list of comma-separated pieces. Each piece has a priority; when the
prompt is longer than the CLIP budget (77 tokens, start and end included) the lowest-priority pieces go first:
quality and camera modifiers, then composition and lighting, style modifiers, secondary images; the style's
medium and the central images stay longest. Variations are written in ``dynamicprompts`` syntax
(``{a|b|c}``) and expanded either at random (seeded) or combinatorially; the budget is met by the longest
expansion, so every variation fits too.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synesthesia.errors import ConfigError

from . import clip_tokens
from .imagery import CONCRETE_KINDS, Imagery, ThemeImagery

# Our sampler names -> (A1111 name, ComfyUI sampler_name, ComfyUI scheduler, diffusers scheduler class).
SAMPLERS: dict[str, tuple[str, str, str, str]] = {
    "dpmpp_2m_karras": ("DPM++ 2M Karras", "dpmpp_2m", "karras", "DPMSolverMultistepScheduler"),
    "dpmpp_sde_karras": ("DPM++ SDE Karras", "dpmpp_sde", "karras", "DPMSolverSDEScheduler"),
    "euler_a": ("Euler a", "euler_ancestral", "normal", "EulerAncestralDiscreteScheduler"),
    "euler": ("Euler", "euler", "normal", "EulerDiscreteScheduler"),
    "heun": ("Heun", "heun", "normal", "HeunDiscreteScheduler"),
    "lms": ("LMS", "lms", "normal", "LMSDiscreteScheduler"),
    "ddim": ("DDIM", "ddim", "ddim_uniform", "DDIMScheduler"),
    "unipc": ("UniPC", "uni_pc", "normal", "UniPCMultistepScheduler"),
}

BASE_NEGATIVE = [
    "lowres", "blurry", "jpeg artifacts", "watermark", "signature", "text", "logo",
    "deformed", "bad anatomy", "extra limbs", "cropped", "worst quality",
]
QUALITY_TAGS = ["fine art", "masterpiece"]

# Priorities: higher stays longer under the token budget. The theme outlasts everything.
P_THEME, THEME_WEIGHT = 110, 1.3
P_MEDIUM, P_CENTRAL, P_USER, P_SETTING, P_MOOD, P_COLOUR, P_LIGHT = 100, 90, 85, 70, 60, 58, 55
P_SECONDARY, P_STYLE_MOD, P_LIGHTING, P_COMPOSITION, P_ACTION, P_CAMERA, P_QUALITY = 50, 35, 30, 25, 22, 20, 10
MAX_WEIGHTED = 3


@lru_cache(maxsize=1)
def styles() -> dict[str, dict]:
    path = resources.files(__package__).joinpath("data", "styles.json")
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def resolve_style(name: str, language: str) -> str:
    """A style preset name from a name or alias; ``auto`` picks ink-wash for Chinese, watercolour otherwise."""
    if name == "auto":
        return "ink-wash" if language == "zh" else "watercolour"
    wanted = name.strip().lower()
    for style, preset in styles().items():
        if wanted == style or wanted in [a.lower() for a in preset["aliases"]]:
            return style
    raise ConfigError(f"imageprompt.style: unknown style {name!r}; choose one of auto, {', '.join(styles())}")


class ImagePromptOptions(BaseModel):
    """Options of the ``imageprompt`` renderer."""

    model_config = ConfigDict(extra="forbid")

    style: str = Field("auto", description="Style preset or alias (ink-wash/水墨, gongbi, ukiyo-e, watercolour, "
                       "oil, photographic, pencil, impressionist); auto: ink-wash for Chinese, watercolour otherwise")
    modifiers: list[str] = Field(default_factory=list, description="Extra prompt modifiers, kept before the style's")
    negative: list[str] = Field(default_factory=list, description="Extra negative-prompt terms")
    weights: bool = Field(True, description="A1111 (word:1.2) emphasis on the central images")
    variations: int = Field(4, ge=0, le=256, description="How many prompt variations to expand")
    variation_mode: Literal["random", "combinatorial"] = "random"
    width: int = Field(768, ge=64, le=4096, multiple_of=8)
    height: int = Field(512, ge=64, le=4096, multiple_of=8)
    steps: int = Field(30, ge=1, le=150)
    cfg: float = Field(7.0, ge=1.0, le=30.0)
    sampler: Literal[tuple(SAMPLERS)] = "dpmpp_2m_karras"  # type: ignore[valid-type]
    checkpoint: str = Field("v1-5-pruned-emaonly.safetensors", min_length=1)
    seed: int | None = Field(None, ge=0, lt=2**32, description="Overrides the artwork's seed")
    token_budget: int = Field(clip_tokens.CLIP_CONTEXT_LENGTH, ge=8, le=clip_tokens.CLIP_CONTEXT_LENGTH)
    sketch: bool = Field(True, description="Also draw sketch.png with Pillow")

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str) -> str:
        if value != "auto":
            try:
                resolve_style(value, "en")
            except ConfigError as error:  # pydantic reports ValueErrors by field name
                raise ValueError(str(error)) from None
        return value

    @field_validator("modifiers", "negative")
    @classmethod
    def _clean_terms(cls, values: list[str]) -> list[str]:
        return [t for t in (clean_phrase(v) for v in values) if t]


def clean_phrase(text: str) -> str:
    """Remove characters that A1111 weights or dynamicprompts syntax would read as syntax."""
    text = re.sub(r"[(){}\[\]|:$\\]|__", " ", text)
    return re.sub(r"\s+", " ", text).strip(" ,")


@dataclass
class Piece:
    text: str
    priority: int
    variants: list[str] = field(default_factory=list)  # when set, a dynamicprompts {a|b|c} slot
    weight: float | None = None

    def render(self, weights: bool, choice: int | None = None, template: bool = False) -> str:
        if self.variants:
            if template:
                return "{" + "|".join(self.variants) + "}"
            return self.variants[choice or 0]
        if weights and self.weight is not None:
            return f"({self.text}:{self.weight:.1f})"
        return self.text

    def longest(self) -> str:
        if not self.variants:
            return self.text
        return max(self.variants, key=lambda v: len(clip_tokens.encode(v)))


@dataclass
class BuiltPrompt:
    prompt: str  # with (word:1.2) weights when enabled: A1111 and ComfyUI
    plain: str  # without weight syntax: diffusers
    negative: str
    template: str  # dynamicprompts syntax
    variations: list[str]
    style: str
    seed: int
    tokens: int
    negative_tokens: int
    kept: list[str]
    dropped: list[str]  # pieces trimmed to meet the token budget, least important first
    theme: str = ""  # the theme's phrase as it leads the prompt ("" without a theme)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def build(imagery: Imagery, options: ImagePromptOptions, seed: int, theme: ThemeImagery | None = None) -> BuiltPrompt:
    """The prompt for ``imagery`` in the chosen style, led by ``theme``; deterministic given ``seed``."""
    style = resolve_style(options.style, imagery.language)
    preset = styles()[style]
    theme_phrase = clean_phrase(theme.phrase) if theme is not None else ""
    pieces = _pieces(imagery, options, preset, theme_phrase)
    kept, dropped = _fit(pieces, options.token_budget)

    rng = random.Random(seed)
    choices = [rng.randrange(len(p.variants)) if p.variants else None for p in kept]
    prompt = ", ".join(p.render(options.weights, c) for p, c in zip(kept, choices, strict=True))
    template = ", ".join(p.render(options.weights, template=True) for p in kept)
    negative = _negative(options, preset)
    return BuiltPrompt(
        prompt=prompt,
        plain=clip_tokens.strip_weights(prompt),
        negative=negative,
        template=template,
        variations=expand(template, options.variations, options.variation_mode, seed),
        style=style,
        seed=seed,
        tokens=clip_tokens.count_tokens(prompt),
        negative_tokens=clip_tokens.count_tokens(negative),
        kept=[p.longest() if p.variants else p.text for p in kept],
        dropped=[p.longest() if p.variants else p.text for p in dropped],
        theme=kept[0].text if theme_phrase and kept and kept[0].priority == P_THEME else "",
    )


def expand(template: str, count: int, mode: str, seed: int) -> list[str]:
    """Expand a dynamicprompts template into ``count`` prompts (seeded when random)."""
    if count <= 0:
        return []
    from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator

    if mode == "combinatorial":
        return [str(p) for p in CombinatorialPromptGenerator().generate(template, max_prompts=count)]
    generator = RandomPromptGenerator(seed=seed)
    return [str(p) for p in generator.generate(template, count, seeds=[seed + i for i in range(count)])]


def _pieces(imagery: Imagery, options: ImagePromptOptions, preset: dict, theme: str = "") -> list[Piece]:
    """Pieces in prompt order (theme, the poem's central images, medium, the other images, setting,
    qualities, modifiers), each with its priority."""
    pieces = [Piece(theme, P_THEME, weight=THEME_WEIGHT)] if theme else []
    concrete = imagery.of_kind(*CONCRETE_KINDS)
    for rank, image in enumerate(concrete):
        weight = None
        if rank < MAX_WEIGHTED:
            weight = min(1.5, 1.3 - 0.1 * rank + 0.1 * (image.count - 1))
        priority = (P_CENTRAL if rank < 5 else P_SECONDARY) - rank
        pieces.append(Piece(clean_phrase(image.phrase), priority, weight=weight))
    # The medium follows the poem's weighted images (at most MAX_WEIGHTED), before the others.
    pieces.insert((1 if theme else 0) + min(len(concrete), MAX_WEIGHTED), Piece(preset["medium"], P_MEDIUM))
    for rank, image in enumerate(imagery.of_kind("season", "time")):
        pieces.append(Piece(clean_phrase(image.en), P_SETTING - rank))
    for rank, image in enumerate(imagery.of_kind("action")):
        pieces.append(Piece(clean_phrase(image.en), P_ACTION - rank))
    moods = imagery.of_kind("mood")
    for rank, image in enumerate(moods):
        text = f"{image.en} atmosphere" if rank == 0 else image.en
        pieces.append(Piece(clean_phrase(text), P_MOOD - rank))
    colours = [clean_phrase(i.en) for i in imagery.of_kind("colour")]
    if colours:
        pieces.append(Piece(" and ".join(colours[:3]) + " tones", P_COLOUR))
    for rank, image in enumerate(imagery.of_kind("light")):
        pieces.append(Piece(clean_phrase(image.en), P_LIGHT - rank))
    for rank, modifier in enumerate(options.modifiers):
        pieces.append(Piece(modifier, P_USER - rank))
    for rank, modifier in enumerate(preset["modifiers"]):
        pieces.append(Piece(modifier, P_STYLE_MOD - rank))
    pieces.append(Piece(preset["lighting"][0], P_LIGHTING, variants=list(preset["lighting"])))
    pieces.append(Piece(preset["composition"][0], P_COMPOSITION, variants=list(preset["composition"])))
    for rank, camera in enumerate(preset["camera"]):
        pieces.append(Piece(camera, P_CAMERA - rank))
    for rank, tag in enumerate(QUALITY_TAGS):
        pieces.append(Piece(tag, P_QUALITY - rank))
    # The same phrase twice (a style modifier the poem also names) costs tokens for nothing.
    seen: set[str] = set()
    unique = []
    for piece in pieces:
        key = piece.text.lower()
        if piece.text and key not in seen:
            seen.add(key)
            unique.append(piece)
    return unique


def _fit(pieces: list[Piece], budget: int) -> tuple[list[Piece], list[Piece]]:
    """Drop the lowest-priority pieces (later ones first among equals) until the longest expansion fits."""
    kept = list(pieces)
    dropped: list[Piece] = []

    def tokens(ps: list[Piece]) -> int:
        return clip_tokens.count_tokens(", ".join(p.longest() for p in ps))

    while len(kept) > 1 and tokens(kept) > budget:
        victim = min(range(len(kept)), key=lambda i: (kept[i].priority, -i))
        dropped.append(kept.pop(victim))
    if tokens(kept) > budget:  # a single piece longer than the budget: cut it at a word boundary
        words = kept[0].text.split()
        while len(words) > 1 and clip_tokens.count_tokens(" ".join(words)) > budget:
            words.pop()
        kept[0] = Piece(" ".join(words), kept[0].priority)
    return kept, dropped


def _negative(options: ImagePromptOptions, preset: dict) -> str:
    terms = list(dict.fromkeys(options.negative + preset["negative"] + BASE_NEGATIVE))
    while len(terms) > 1 and clip_tokens.count_tokens(", ".join(terms)) > options.token_budget:
        terms.pop()
    return ", ".join(terms)
