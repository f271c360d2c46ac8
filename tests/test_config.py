"""One source for each run default: the structured configs (``synesthesia.config``)."""

from __future__ import annotations

import dataclasses

import pytest

from synesthesia.components import SamplingSettings
from synesthesia.config import GenerationConfig, RunConfig, compose_run_config, with_defaults
from synesthesia.errors import ConfigError
from synesthesia.pipeline import plan
from synesthesia.plugins import get_registry
from tests.conftest import REPO


def test_the_composed_config_is_the_dataclass_defaults():
    # conf/*.yaml list only what differs: with no overrides, `run` composes exactly RunConfig() (and every
    # renderer's option defaults).
    composed = compose_run_config()
    assert {**composed, "renderer": {}} == dataclasses.asdict(RunConfig())
    assert set(composed["renderer"]) == set(get_registry().renderers())


def test_the_yaml_files_repeat_no_default():
    import yaml

    schema = dataclasses.asdict(RunConfig())
    for path in [REPO / "conf" / "config.yaml", *sorted((REPO / "conf").glob("*/*.yaml"))]:
        if path.parent.name == "train":
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        section = schema if path.parent.name == "conf" else schema[path.parent.name]
        repeated = {k for k, v in data.items() if k not in ("defaults", "hydra") and section.get(k) == v}
        assert not repeated, f"{path.relative_to(REPO)} repeats the defaults of {sorted(repeated)}"


def test_sampling_settings_take_the_run_defaults():
    settings, run = SamplingSettings(), GenerationConfig()
    for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty"):
        assert getattr(settings, name) == getattr(run, name), name


def test_a_partial_config_is_planned_with_the_run_defaults():
    partial = plan({"form": "五绝", "model": {"name": "tang"}})
    full = plan({**compose_run_config(["form=五绝", "model.name=tang"])})
    assert partial.sampling == full.sampling and partial.candidates == full.candidates
    assert partial.threads == full.threads == RunConfig().model.threads
    # What a caller gives is kept as given, nested maps merged key by key.
    merged = with_defaults({"generation": {"top_k": 7}, "renderer": {"poem_png": {"width": 9}}})
    assert merged["generation"]["top_k"] == 7 and merged["generation"]["top_p"] == GenerationConfig.top_p
    assert merged["renderer"] == {"poem_png": {"width": 9}}


def test_generate_composes_the_config_run_composes():
    # `synesthesia generate`'s options are overrides of run's config: the same defaults, the same checks.
    from synesthesia.cli import GENERATE_OPTIONS

    assert set(GENERATE_OPTIONS.values()) <= {"form", "model.name", "seed"} | {
        f"generation.{f.name}" for f in dataclasses.fields(GenerationConfig)}
    with pytest.raises(ConfigError, match="generation.top_p must be in"):
        plan(compose_run_config(["form=五绝", "generation.top_p=3"]))
    with pytest.raises(ConfigError, match="unknown setting 'generation.top_q'"):
        compose_run_config(["generation.top_q=3"])


def test_a_value_that_is_not_a_number_is_one_line():
    with pytest.raises(ConfigError, match="generation.temperature must be a number"):
        plan({"form": "五绝", "model": {"name": "tang"}, "generation": {"temperature": "warm"}})


def test_user_text_is_never_interpolated():
    config = compose_run_config(["theme=${oc.env:HOME}", "prompt=秋,月"])
    assert config["theme"] == "${oc.env:HOME}" and config["prompt"] == "秋,月"
