"""Hugging Face ``transformers`` as a text generator (built-in plugin).

``model.generator=hf model.name=PATH_OR_ID`` loads any causal LM that ``transformers`` loads from a local
folder or the local Hugging Face cache (never from the network), e.g. a model written by
``synesthesia export tang --format hf OUT``. The form's logits processors run inside HF's ``generate``;
see ``synesthesia_hf.backend``. ``transformers`` is imported only when a model is loaded.
"""

from __future__ import annotations

from typing import Any

import synesthesia


class HFGenerator:
    """Any causal LM ``transformers`` can load locally. ``model.name`` is a folder or a cached model id."""

    name = "hf"

    def load(self, model: str | None, device: str = "cpu", dtype: str = "float32") -> Any:
        from synesthesia_hf.backend import load_hf

        return load_hf(model, device=device, dtype=dtype)


@synesthesia.hookimpl
def register_config_paths(register):
    register("pkg://synesthesia_hf.conf")  # model=hf


@synesthesia.hookimpl
def register_generators(register):
    register(HFGenerator())
