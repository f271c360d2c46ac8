"""From an HTTP intent to a run config, checked like the CLI and never interpolated.

The base config is composed once at start exactly as ``synesthesia run`` composes it (Hydra, the shipped
``conf/`` and plugins' config folders, no overrides) and turned into plain Python values. A request's
values are checked by a pydantic schema with only the keys a run accepts (unknown keys are refused), then
merged into a copy of the base as plain values: no Hydra override strings are built from them and no
OmegaConf resolution ever sees them, so ``${oc.env:...}`` in a theme stays literal text. Then
``synesthesia.pipeline.plan`` checks the whole config against the plugins, as the CLI does before any work.

What HTTP cannot reach: ``model.generator``, ``model.device``, ``model.threads``, ``model.dtype``, model
paths (``model`` must be ``auto`` or a served model's name), ``pipeline.fail_on_renderer_error``, Hydra
keys, and renderer options that name files, fonts, ports or devices.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synesthesia.errors import ConfigError

# Renderer options that touch the server's filesystem or devices; refused over HTTP.
FILESYSTEM_OPTION = re.compile(r"(^|_)(font|soundfont|path|file|files|dir|directory|folder|port|device|exe|"
                               r"executable|command|url)$")


def compose_base_config(registry: Any) -> dict[str, Any]:
    """The config ``synesthesia run`` composes with no overrides, as plain values (the ``hydra`` key dropped)."""
    from synesthesia.config import compose_run_config

    return compose_run_config((), registry)


class GenerationIntent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: Optional[float] = Field(None, ge=0, le=5)
    top_k: Optional[int] = Field(None, ge=0, le=1000)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    repetition_penalty: Optional[float] = Field(None, gt=0, le=5)
    max_new_tokens: Optional[int] = Field(None, ge=0, le=1024)
    candidates: Optional[int] = Field(None, ge=1, le=16)
    max_attempts: Optional[int] = Field(None, ge=1, le=5)
    constrained: Optional[bool] = None


JsonScalar = Optional[str | int | float | bool]


class ArtworkIntent(BaseModel):
    """``POST /v1/artworks``: what a ``synesthesia run`` accepts, minus what only the operator may set."""

    model_config = ConfigDict(extra="forbid")

    form: str = Field("free", min_length=1, max_length=40)
    theme: str = Field("", max_length=200)
    prompt: str = Field("", max_length=1000)
    title: str = Field("", max_length=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    model: str = Field("auto", min_length=1, max_length=200)
    renderers: Optional[list[str]] = Field(None, max_length=32)
    options: dict[str, dict[str, JsonScalar | list[JsonScalar]]] = Field(default_factory=dict, max_length=32)
    form_options: dict[str, JsonScalar | list[JsonScalar]] = Field(default_factory=dict, max_length=16)
    generation: GenerationIntent = Field(default_factory=GenerationIntent)

    @field_validator("renderers")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not name or len(name) > 64:
                raise ValueError("renderer names are 1-64 characters")
        return value

    @field_validator("options")
    @classmethod
    def _no_files(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for renderer, opts in value.items():
            for key in opts:
                if FILESYSTEM_OPTION.search(key):
                    raise ValueError(f"option '{renderer}.{key}' names a file, font, port or device on the server "
                                     "and cannot be set over HTTP")
        return value


def intent_to_config(intent: ArtworkIntent, base: dict[str, Any], models: Any) -> dict[str, Any]:
    """The run config for an intent: a copy of the base with the intent's plain values set."""
    config = copy.deepcopy(base)
    for key in ("form", "theme", "prompt", "title", "seed"):
        config[key] = getattr(intent, key)
    config["form_options"] = dict(intent.form_options)
    config["renderer"] = {name: dict(opts) for name, opts in intent.options.items()}
    if intent.renderers is not None:
        config.setdefault("pipeline", {})["renderers"] = list(intent.renderers)
    generation = config.setdefault("generation", {})
    for key, value in intent.generation.model_dump(exclude_none=True).items():
        generation[key] = value
    model = config.setdefault("model", {})
    if intent.model != "auto":
        served = models.resolve(intent.model)
        model["generator"], model["name"] = served.generator, served.name
    return config


def check_planned_model(plan_: Any, models: Any) -> None:
    """After ``plan``: the model ``auto`` chose must be served too."""
    generator = getattr(plan_.generator, "name", "")
    if not models.allowed_name(generator, plan_.model_name):
        raise ConfigError(f"model '{plan_.model_name}' (chosen for form '{plan_.form.name}') is not served here; "
                          f"served models: {', '.join(models.served)}")
