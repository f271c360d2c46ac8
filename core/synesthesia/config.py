"""Structured configs for ``synesthesia run``: the schema Hydra checks overrides against.

An unknown key or a value of the wrong type fails when the config is composed, before any work starts.
Renderer options are free-form here and validated by each renderer's own pydantic model (also before
any work starts, see ``synesthesia.pipeline.plan``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

CONFIG_MODULE = "synesthesia.conf"


@dataclass
class ModelConfig:
    generator: str = "transformer"
    # A registered checkpoint name, a checkpoint folder, or "auto": chosen by the form's name, else its
    # language (verse forms: verse; screenplays and stories: shakespeare, which learned drama).
    name: str = "auto"
    auto: Dict[str, str] = field(default_factory=lambda: {
        "screenplay": "shakespeare", "story": "shakespeare", "zh": "tang", "en": "verse", "default": "verse"})
    device: str = "cpu"
    # CPU threads for decoding; 0 keeps torch's default. Small models decode fastest on one thread,
    # and more threads slow to a crawl when other processes share the cores.
    threads: int = 1
    # Inference weights: float32 (tokens exactly as trained), bfloat16, or int8 (weight-only; fastest).
    dtype: str = "float32"
    # model.generator=openai: the server's base URL (http://127.0.0.1:8000/v1; None: OpenAI itself) and the
    # environment variable that holds the API key (its value is never written to a manifest or log).
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"


@dataclass
class GenerationConfig:
    temperature: float = 0.8
    top_k: Optional[int] = 40
    top_p: Optional[float] = 0.95
    min_p: Optional[float] = None
    repetition_penalty: float = 1.1
    # 0 means the form's own budget.
    max_new_tokens: int = 0
    stop: List[str] = field(default_factory=list)
    # Candidates decoded together; the best valid one is kept.
    candidates: int = 8
    # Rounds of candidates (each with a new seed) before settling for the best invalid one.
    max_attempts: int = 3
    # Form constraints (logits processors) on or off: off shows what the bare model writes.
    constrained: bool = True


@dataclass
class PipelineConfig:
    # Renderer names, or ["all"]: every registered renderer that applies to the form's language.
    renderers: List[str] = field(default_factory=lambda: ["all"])
    # A renderer that raises is recorded in the manifest and the rest still render; true makes it fatal.
    fail_on_renderer_error: bool = False


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    form: str = "free"
    theme: str = ""
    prompt: str = ""
    title: str = ""
    seed: int = 0
    form_options: Dict[str, Any] = field(default_factory=dict)
    # Per-renderer options: renderer.<name>.<option>=value
    renderer: Dict[str, Any] = field(default_factory=dict)


def register_configs(renderer_options: dict[str, dict[str, Any]] | None = None) -> None:
    """Store the schema for Hydra. ``renderer_options`` (``{renderer: {option: default}}``, from
    ``synesthesia.plugins.option_defaults``) fills ``renderer``, so ``--cfg job`` shows every option."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    renderer = {name: {key: value.replace("${", "\\${") if isinstance(value, str) else value  # never interpolated
                       for key, value in options.items()} for name, options in (renderer_options or {}).items()}
    store.store(name="run_schema", node=RunConfig(renderer=renderer) if renderer else RunConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="generation", name="generation_schema", node=GenerationConfig)
    store.store(group="pipeline", name="pipeline_schema", node=PipelineConfig)


# Free-form option maps: their keys are not known to the schema, so overrides of them add or replace.
OPEN_MAPS = ("renderer.", "form_options.")


def prepare_override(arg: str, sweep: bool = True) -> str:
    """Make an override as typed by an artist acceptable to Hydra (see ``quote_override``), and let
    ``renderer.<name>.<option>=…`` and ``form_options.<key>=…`` add keys the schema cannot know."""
    arg = quote_override(arg, sweep)
    if arg.startswith(OPEN_MAPS) and "=" in arg:
        return "++" + arg
    return arg


# A value part Hydra's grammar takes as it is; anything else (spaces, apostrophes, brackets, ``$``, CJK…) is
# quoted, so any theme, title or prompt a person types works.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:/+@~-]*")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
# What a person writes in words: never a list, a dict or a sweep function, whatever it starts with.
FREE_TEXT_KEYS = frozenset({"theme", "prompt", "title"})


def _quote(text: str) -> str:
    """``text`` as a Hydra quoted string whose value, once OmegaConf has read it, is ``text`` again."""
    # OmegaConf: ``\${`` is a literal ``${``; backslashes before it are doubled so they stay backslashes.
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    # Hydra: backslashes before a quote or the end of the string are doubled, then quotes escaped.
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def quote_override(arg: str, sweep: bool = True) -> str:
    """Quote values so Hydra's override grammar takes them literally: ``form=七绝`` → ``form='七绝'``,
    ``theme=a keeper's night`` → ``theme='a keeper\\'s night'``. A user's ``${…}`` is escaped, never
    interpolated (``theme=${oc.env:HOME}`` stays that text; a server would leak the environment otherwise).
    ``hydra.*`` settings are left to Hydra.

    Sweeps keep working: ``form=七绝,haiku`` → ``form='七绝',haiku``; without ``sweep`` (a single run) a
    comma is part of the text: ``theme=秋,月`` → ``theme='秋,月'``.
    """
    if "=" not in arg:
        return arg
    key, value = arg.split("=", 1)
    if key.lstrip("+~").startswith(("hydra.", "hydra/")):
        return arg
    if key.lstrip("+~") in FREE_TEXT_KEYS:
        if _QUOTED.fullmatch(value):
            return arg  # already quoted by the person typing it
    elif value[:1] in {"'", '"', "[", "{"} or value.startswith(("choice(", "range(", "glob(", "interval(")):
        return arg
    parts = [p if _PLAIN_VALUE.fullmatch(p) else _quote(p) for p in (value.split(",") if sweep else [value])]
    return f"{key}={','.join(parts)}"
