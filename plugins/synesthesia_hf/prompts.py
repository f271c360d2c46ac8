"""Prompts for models that were not trained with our control tokens: a chat message (or plain text for a
base model) that states the form's rules, the theme and the language. Shared by the ``hf`` generator (chat
templates) and the ``openai`` generator. No heavy imports."""

from __future__ import annotations

from typing import Any

from synesthesia.components import Conditioning

LANGUAGE_NAMES = {"zh": "classical Chinese (文言, one character per syllable)", "en": "English"}

SYSTEM_PROMPT = ("You are a poet. You answer with the requested text only: no title, no commentary, "
                 "no quotation marks, no markdown.")

# Rules a form's description does not spell out, for the forms validators are strictest about.
EXTRA_RULES = {
    "五绝": "4 lines of exactly 5 Chinese characters; end line 1 with ， and line 2 with 。 and so on; "
            "lines 2 and 4 rhyme (平水韵 level tone); follow regulated 平仄.",
    "七绝": "4 lines of exactly 7 Chinese characters; line 1 ends with ， line 2 with 。 line 3 with ， "
            "line 4 with 。; lines 2 and 4 (and usually 1) rhyme in one 平水韵 level-tone group; "
            "follow regulated 平仄.",
    "五律": "8 lines of exactly 5 Chinese characters, alternately ending with ， and 。; even lines rhyme "
            "(平水韵 level tone); regulated 平仄; lines 3-4 and 5-6 are parallel couplets.",
    "七律": "8 lines of exactly 7 Chinese characters, alternately ending with ， and 。; even lines rhyme "
            "(平水韵 level tone); regulated 平仄; lines 3-4 and 5-6 are parallel couplets.",
    "haiku": "exactly 3 lines of 5, 7 and 5 syllables.",
    "limerick": "exactly 5 lines rhyming AABBA, anapestic rhythm.",
    "sonnet": "exactly 14 lines of iambic pentameter rhyming ABAB CDCD EFEF GG.",
}


def form_description(name: str | None) -> str:
    """The registered form's own description, or '' when there is no such form."""
    if not name:
        return ""
    try:
        from synesthesia.plugins import get_registry

        return str(get_registry().form(name).description)
    except Exception:  # an unknown form: the prompt names it and nothing more
        return ""


def instruction(conditioning: Conditioning) -> str:
    """The user message: the form, its rules, the theme and the language."""
    form = conditioning.form or "free verse"
    parts = [f"Write a poem in the form {form}."]
    description = form_description(conditioning.form)
    if description:
        parts.append(f"The form: {description}.")
    rules = EXTRA_RULES.get(form)
    if rules:
        parts.append(f"Rules: {rules}")
    if conditioning.keywords:
        parts.append(f"Theme: {' '.join(conditioning.keywords)}.")
    if conditioning.language:
        parts.append(f"Language: {LANGUAGE_NAMES.get(conditioning.language, conditioning.language)}.")
    if conditioning.prefix:
        parts.append(f"Begin with exactly: {conditioning.prefix}")
    parts.append("Answer with the poem only, one line per line.")
    return " ".join(parts)


def chat_messages(conditioning: Conditioning) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": instruction(conditioning)}]


def plain_prompt(conditioning: Conditioning) -> str:
    """For a base model without a chat template: the instruction, then the poem's beginning."""
    return instruction(conditioning) + "\n\n" + conditioning.prefix
