"""Counting prompt tokens the way Stable Diffusion's CLIP text encoder sees them.

The counting uses the real CLIP byte-pair encoding (vocabulary and merges of OpenAI's CLIP, as shipped inside
the ``instant-clip-tokenizer`` wheel), so it works offline and agrees with what the diffusion tools truncate.
A1111 and ComfyUI strip the ``(word:1.2)`` emphasis syntax before tokenizing, so the budget is counted on the
prompt with that syntax removed.
"""

from __future__ import annotations

import re
from functools import lru_cache

CLIP_CONTEXT_LENGTH = 77  # tokens the text encoder reads, <start_of_text> and <end_of_text> included

# (text:1.25) -> text ; also the bare emphasis brackets ( ) [ ] that A1111 reads as weights.
_WEIGHTED = re.compile(r"\(([^():]+):\s*-?\d+(?:\.\d+)?\)")
_BRACKETS = re.compile(r"(?<!\\)[()\[\]]")


@lru_cache(maxsize=1)
def _tokenizer():
    from instant_clip_tokenizer import Tokenizer  # lazy: a native module, loaded only when counting

    return Tokenizer()


def strip_weights(prompt: str) -> str:
    """The text the encoder sees once emphasis syntax is parsed away: ``(moon:1.3), frost`` -> ``moon, frost``."""
    return _BRACKETS.sub("", _WEIGHTED.sub(r"\1", prompt))


def encode(text: str) -> list[int]:
    """CLIP BPE ids of ``text`` without the start/end tokens."""
    return list(_tokenizer().encode(text))


def decode(ids: list[int]) -> str:
    return _tokenizer().decode(ids)


def count_tokens(prompt: str, *, weighted: bool = True) -> int:
    """Tokens the text encoder reads for ``prompt``, start and end tokens included.

    With ``weighted`` the A1111/ComfyUI emphasis syntax is removed first, as those tools do.
    """
    text = strip_weights(prompt) if weighted else prompt
    return len(encode(text)) + 2


def fits(prompt: str, budget: int = CLIP_CONTEXT_LENGTH) -> bool:
    return count_tokens(prompt) <= budget
