"""Property-based: whatever text a person types as a theme or title, the CLI's quoting hands Hydra exactly
that text (never interpolated), and theme understanding and planning never fail with a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synesthesia.config import quote_override
from synesthesia.errors import ConfigError
from synesthesia.theme import understand_theme

# Text a person can type: any Unicode but NUL and lone surrogates (a terminal cannot pass those as an argument).
typed = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=typed)
def test_quoted_values_reach_hydra_as_typed(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    override = OverridesParser.create().parse_override(quote_override(f"theme={value}", sweep=False))
    parsed = override.value()
    if not isinstance(parsed, str):
        # Unquoted plain values Hydra reads as numbers, booleans or null ("3", "true"): the schema's str
        # field turns them back into their text, which is what the artist typed for these simple words.
        assert str(value).strip() == value or value.strip() == ""
        return
    resolved = OmegaConf.to_container(OmegaConf.create({"theme": parsed}), resolve=True)["theme"]
    assert resolved == value.strip() or resolved == value


@settings(max_examples=300, deadline=None)
@given(value=typed, language=st.sampled_from(["zh", "en", None]))
def test_any_theme_is_understood_or_named_never_a_traceback(value, language):
    theme = understand_theme(value, language)
    assert isinstance(theme.keywords, list) and len(theme.keywords) <= 8
    assert all(isinstance(k, str) and k for k in theme.keywords)


@settings(max_examples=100, deadline=None)
@given(value=typed)
def test_planning_any_theme_is_fine_or_one_clear_error(value):
    from synesthesia.pipeline import plan

    for form in ("七绝", "sonnet"):
        try:
            made = plan({"form": form, "theme": value, "model": {"name": "tang" if form == "七绝" else "verse"}})
        except ConfigError as exc:
            assert "\n" not in str(exc)
            continue
        assert made.request.keywords == made.theme.keywords
        if made.form.plan:
            assert all(entry["keyword"] in made.request.keywords for entry in made.form.plan(made.request))
