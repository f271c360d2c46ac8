"""Structured configs for ``synesthesia run``: the schema Hydra checks overrides against, and the one
source of every run default (``conf/*.yaml`` lists only what differs; ``generate``, ``serve`` and
``installation`` compose the same config as ``run``, see ``compose_run_config``).

An unknown key or a value of the wrong type fails when the config is composed, before any work starts.
Renderer options are free-form here and validated by each renderer's own pydantic model (also before
any work starts, see ``synesthesia.pipeline.plan``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

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
    # Inference weights: float32 (tokens exactly as trained), bfloat16, int8 (weight-only), or auto: what this
    # machine runs fastest, never slower than float32 (synesthesia.hardware; the manifest's model.dtype_choice
    # says what and why). float32 stays the default: auto may pick int8, whose tokens differ from the trained
    # model's and from machine to machine, and which the hf generator does not take.
    dtype: str = "float32"
    # torch.compile the transformer's decoding step (the same tokens): on CPU ~20-30% faster per token at batch 1
    # and at 8 candidates after a compile per batch size in every new process (~20-35 s the first time on a
    # machine, ~5-12 s once its cache holds it), so it pays in a long-lived server or installation, not in one run.
    compile: bool = False
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


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (perhaps partial: a test's or a benchmark's ``{"form": ..., "model": {"name": ...}}``) with
    every key it leaves out taken from ``RunConfig``, as plain values; what it gives is kept as given."""
    merged = dataclasses.asdict(RunConfig())
    for key, value in dict(config).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key in _SECTIONS:
            merged[key] = {**merged[key], **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


_SECTIONS = ("model", "generation", "pipeline")


def compose_run_config(overrides: list[str] | tuple[str, ...] = (), registry: Any = None) -> dict[str, Any]:
    """The config ``synesthesia run OVERRIDES`` composes (Hydra, the shipped ``conf/`` and the plugins'
    config folders), as plain values without the ``hydra`` key. A bad override is one ConfigError line."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from synesthesia.errors import ConfigError
    from synesthesia.plugins import get_registry, option_defaults

    registry = registry if registry is not None else get_registry()
    register_configs({name: option_defaults(r) for name, r in registry.renderers().items()})  # as `run` does
    args = [prepare_override(o, sweep=False) for o in overrides]
    extra = registry.config_paths()
    if extra and not any(a.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for a in args):
        args.append("hydra.searchpath=[" + ",".join(extra) + "]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name="config", overrides=args)
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # Hydra's and OmegaConf's errors, whatever their class
        raise ConfigError(hydra_error_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(config, dict)
    config.pop("hydra", None)
    return config  # type: ignore[return-value]


def hydra_error_line(exc: BaseException) -> str:
    """One line for what Hydra or OmegaConf rejected (an unknown key, a value of the wrong type, a run
    folder that cannot be written) instead of their multi-line reports."""
    from synesthesia.fileio import DISK_ERRORS

    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
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
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:/+@-]*")  # no "~": a value that starts with one is not Hydra syntax
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
