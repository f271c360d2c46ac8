"""Prose forms (screenplay, story): the parts placed by the form, the content the model's, on the theme."""

from __future__ import annotations

import pytest

from synesthesia.components import FormRequest, GenerationRequest, SamplingSettings
from synesthesia.errors import ConfigError
from synesthesia_poetry import prose
from synesthesia_poetry.forms import all_forms, fountain_elements

FORMS = {f.name: f for f in all_forms()}
SAMPLING = dict(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1)


@pytest.fixture(scope="module")
def shakespeare():
    from synesthesia_transformer import TransformerGenerator

    return TransformerGenerator().load("shakespeare")


def generate(loaded, form, request, *, constrained=True, n=2, seed=0, max_new_tokens=None):
    sampling = SamplingSettings(seed=seed, max_new_tokens=max_new_tokens or form.max_new_tokens, **SAMPLING)
    raw = loaded.generate(GenerationRequest(
        conditioning=form.conditioning(request), sampling=sampling, n=n,
        make_logits_processors=(lambda tok: form.logits_processors(tok, request)) if constrained else None))
    return [form.finalize(text) for text in raw]


def body(text: str) -> str:
    return "\n".join(t for k, t in fountain_elements(text) if k in ("action", "dialogue"))


# -- without a model ---------------------------------------------------------------------------------


def test_heading_and_cast_come_from_the_theme_and_options_win():
    request = FormRequest(theme="lighthouse keeper")
    assert prose.scene_heading(request).startswith("EXT. LIGHTHOUSE - ")
    assert prose.cast(request)[0] == "KEEPER" and len(prose.cast(request)) == 2
    assert prose.theme_phrase(request) == "lighthouse keeper"
    assert prose.theme_phrase(FormRequest(theme="harbour at dawn")) == "harbour at dawn"
    assert prose.theme_phrase(FormRequest(theme="the old road")) == "old road"
    given = FormRequest(theme="lighthouse keeper", options={"heading": "int. kitchen - day", "cast": "ANN, BO"})
    assert FORMS["screenplay"].conditioning(given).prefix == "INT. KITCHEN - DAY\n\n"
    assert prose.cast(given) == ["ANN", "BO"]
    # A heading without INT./EXT. is made a Fountain heading with the leading dot.
    assert prose.scene_heading(FormRequest(options={"heading": "the lamp room"})) == ".THE LAMP ROOM"
    # A theme with no place word still gets a heading the validator reads.
    assert prose.scene_heading(FormRequest(theme="grief")).startswith("INT. ")
    with pytest.raises(ConfigError, match="exchanges"):
        prose.screenplay_parts(FormRequest(theme="sea", options={"exchanges": 9}))


def test_validators_mark_a_text_that_never_names_its_theme():
    scene = ("EXT. SHORE - NIGHT\n\nThe tide comes in over the stones.\n\nMARA\nIt is late.\n\n"
             "TOMAS\nThe sea will have the boat by morning.")
    sea, desert = FormRequest(theme="winter sea"), FormRequest(theme="desert")
    on, off = FORMS["screenplay"].validate(scene, sea), FORMS["screenplay"].validate(scene, desert)
    assert on.ok and on.score == 1.0 and not on.problems
    assert off.ok and off.score < on.score and any("theme" in p for p in off.problems)
    # The heading does not count as a mention.
    assert any("theme" in p for p in FORMS["screenplay"].validate(
        scene.replace("SHORE", "DESERT"), desert).problems)
    story = "The ferry left at dawn and nobody waved from the quay. " * 5
    assert FORMS["story"].validate(story, FormRequest(theme="ferry")).score == 1.0
    verdict = FORMS["story"].validate(story, FormRequest(theme="lighthouse"))
    assert verdict.ok and verdict.score < 1.0 and any("theme" in p for p in verdict.problems)


def test_finalize_trims_a_scene_cut_off_by_the_token_budget():
    cut = "INT. ATTIC - NIGHT\n\nThe candle gutters.\n\nMARA\nIt is late. And the\n\nTOMAS"
    assert prose.finalize_screenplay(cut) == "INT. ATTIC - NIGHT\n\nThe candle gutters.\n\nMARA\nIt is late."


# -- with the shipped model --------------------------------------------------------------------------


def test_a_screenplay_is_valid_fountain_on_its_theme(shakespeare):
    form = FORMS["screenplay"]
    request = FormRequest(theme="lighthouse keeper")
    for text in generate(shakespeare, form, request):
        verdict = form.validate(text, request)
        assert verdict.ok and not verdict.problems, (verdict, text)
        kinds = [k for k, _ in fountain_elements(text)]
        assert kinds[:2] == ["scene_heading", "action"], text
        assert kinds[2:] == ["character", "dialogue"] * 3, text  # three exchanges, one speech each
        assert text.startswith(prose.scene_heading(request) + "\n\n")
        cues = [t for k, t in fountain_elements(text) if k == "character"]
        assert set(cues) <= set(prose.cast(request)) and all(a != b for a, b in zip(cues, cues[1:])), cues
        assert prose.theme_mentions(body(text), ["lighthouse", "keeper"]), text
        assert ":" not in text, text  # no drama cues


def test_without_the_constraints_the_same_screenplay_is_not(shakespeare):
    form = FORMS["screenplay"]
    request = FormRequest(theme="lighthouse keeper")
    texts = generate(shakespeare, form, request, constrained=False, max_new_tokens=300)
    for text in texts:
        verdict = form.validate(text, request)
        assert not (verdict.ok and not verdict.problems), text


def test_a_story_names_its_theme_and_ends_on_a_sentence(shakespeare):
    form = FORMS["story"]
    request = FormRequest(theme="winter sea", options={"min_words": 30})
    for text in generate(shakespeare, form, request):
        verdict = form.validate(text, request)
        assert verdict.ok and not verdict.problems, (verdict, text)
        assert text.endswith(".") and len(text.split()) >= 30, text
        assert prose.theme_mentions(text, ["winter", "sea"]), text
        assert ":" not in text and "\n" not in text, text
