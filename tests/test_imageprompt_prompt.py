"""Prompt building: CLIP token budget with the real tokenizer, weights, variations, styles, determinism."""

from __future__ import annotations

import re

import pytest
from dynamicprompts.parser.parse import parse
from instant_clip_tokenizer import Tokenizer
from pydantic import ValidationError

from synesthesia.errors import ConfigError
from synesthesia_imageprompt import clip_tokens, imagery, prompt
from synesthesia_imageprompt.prompt import ImagePromptOptions

FENG_QIAO_YE_BO = "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。"
SONNET_18 = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;"""
# Many images at once, so that the budget has to trim.
CROWDED = (SONNET_18 + "\nThe river, the mountain, the willow, the lantern, the bridge, the temple, the crane, "
           "the orchard, the harbour, the lighthouse, the meadow, the fox, the raven and the pearl at dawn in winter.")
WEIGHT = re.compile(r"\(([^():]+):(\d+\.\d)\)")


def real_clip_count(text: str) -> int:
    """Independent count: the CLIP tokenizer on the text with weight syntax parsed away, plus start/end."""
    plain = WEIGHT.sub(r"\1", text)
    return len(Tokenizer().encode(plain)) + 2


def build(text: str, seed: int = 1, **options) -> prompt.BuiltPrompt:
    return prompt.build(imagery.extract(text), ImagePromptOptions(**options), seed)


def test_tokenizer_is_the_real_clip_vocabulary():
    # Known ids of OpenAI CLIP's BPE (49406/49407 are <start_of_text>/<end_of_text>).
    assert clip_tokens.encode("A person riding a motorcycle") == [320, 2533, 6765, 320, 10297]
    assert (Tokenizer().start_of_text(), Tokenizer().end_of_text()) == (49406, 49407)
    assert clip_tokens.count_tokens("(moon:1.3), frost") == clip_tokens.count_tokens("moon, frost") == 5


def test_crowded_poem_is_trimmed_to_77_tokens_least_important_first():
    built = build(CROWDED, variations=8)
    assert built.tokens == real_clip_count(built.prompt) <= 77
    assert built.dropped, "this many images must not fit: trimming was expected"
    # Quality and camera modifiers go before any of the central images.
    assert {"masterpiece", "fine art", "eye-level view"} <= set(built.dropped)
    # Without a theme the poem's central images lead; the medium follows them and is never trimmed.
    assert built.kept[0] == "winds" and "watercolour painting" in built.kept[1:5]
    for phrase in built.dropped:
        assert phrase not in built.prompt.split(", ")
    for variation in built.variations:
        assert real_clip_count(variation) <= 77
    assert real_clip_count(built.negative) <= 77


def test_short_poem_keeps_everything():
    built = build("The moon over the pond")
    assert built.dropped == [] and built.tokens == real_clip_count(built.prompt) < 77
    assert "masterpiece" in built.prompt


def test_smaller_budget_is_respected():
    built = build(FENG_QIAO_YE_BO, token_budget=30)
    assert real_clip_count(built.prompt) <= 30
    assert built.prompt.startswith("(setting moon:1.3), (crows crying:1.2), (frost:1.1), "
                                   "traditional Chinese ink wash painting")


def test_weights_are_well_formed_and_optional():
    built = build(FENG_QIAO_YE_BO)
    weighted = WEIGHT.findall(built.prompt)
    assert [w for _, w in weighted] == ["1.3", "1.2", "1.1"]
    assert built.prompt.count("(") == built.prompt.count(")") == len(weighted)
    assert all(1.0 <= float(w) <= 1.5 for _, w in weighted)
    unweighted = build(FENG_QIAO_YE_BO, weights=False)
    assert "(" not in unweighted.prompt and unweighted.prompt == built.plain


def test_variations_parse_with_dynamicprompts():
    built = build(FENG_QIAO_YE_BO, variations=3)
    parsed = parse(built.template)  # raises on malformed syntax
    assert "VariantCommand" in repr(parsed)
    assert len(built.variations) == 3
    for variation in built.variations:
        assert "{" not in variation and "|" not in variation
    combinatorial = build(FENG_QIAO_YE_BO, variations=50, variation_mode="combinatorial")
    # Every combination of the lighting x composition slots that survived the budget, each once.
    assert len(combinatorial.variations) == len(set(combinatorial.variations)) >= 3


def test_same_seed_same_prompt_and_other_seeds_vary():
    first = build(FENG_QIAO_YE_BO, seed=123, variations=5)
    again = build(FENG_QIAO_YE_BO, seed=123, variations=5)
    assert first.to_json() == again.to_json()
    others = {build(FENG_QIAO_YE_BO, seed=s, variations=5).prompt for s in range(6)}
    assert len(others) > 1  # the seed picks the lighting slot


def test_styles_and_aliases():
    assert build(FENG_QIAO_YE_BO, style="水墨").style == "ink-wash"
    assert build(FENG_QIAO_YE_BO).style == "ink-wash"  # auto for classical Chinese
    assert build(SONNET_18).style == "watercolour"  # auto for English
    photo = build(SONNET_18, style="photographic")
    assert "cinematic photograph" in photo.prompt.split(", ")[1:5] and "painting" in photo.negative
    assert build(SONNET_18, style="ukiyo-e", modifiers=["misty {blue|green}"]).prompt.count("misty blue green") == 1


def test_bad_options_are_reported_by_field():
    with pytest.raises(ValidationError, match="style"):
        ImagePromptOptions(style="cubism")
    with pytest.raises(ValidationError, match="width"):
        ImagePromptOptions(width=500)  # not a multiple of 8
    with pytest.raises(ValidationError, match="sampler"):
        ImagePromptOptions(sampler="magic")
    with pytest.raises(ConfigError, match="imageprompt.style"):
        prompt.resolve_style("cubism", "en")
