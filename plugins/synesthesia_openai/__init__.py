"""Any OpenAI-compatible server as a text generator (built-in plugin): vLLM, llama.cpp's server, Ollama,
OpenAI itself, or ``synesthesia serve``, through the official ``openai`` client.

``model.generator=openai model.name=MODEL model.base_url=http://HOST:PORT/v1`` (the key is read from the
environment variable ``model.api_key_env``, default ``OPENAI_API_KEY``, and never written anywhere). A chat
prompt per form states its rules, theme and language; ``n`` candidates come back and the form's validators
reject and rank them (no logits remotely). See ``synesthesia_openai.backend``.
"""

from __future__ import annotations

from typing import Any

import synesthesia


class OpenAIGenerator:
    """A model behind an OpenAI-compatible endpoint."""

    name = "openai"
    # model.* options the pipeline hands to ``load`` besides name, device and dtype.
    options = ("base_url", "api_key_env")

    def load(self, model: str | None, device: str = "cpu", dtype: str = "float32", *, base_url: str | None = None,
             api_key_env: str | None = None, timeout: float = 60.0, max_retries: int = 3) -> Any:
        from synesthesia_openai.backend import load_openai

        return load_openai(model, base_url=base_url, api_key_env=api_key_env or "OPENAI_API_KEY", timeout=timeout,
                           max_retries=max_retries)


@synesthesia.hookimpl
def register_config_paths(register):
    register("pkg://synesthesia_openai.conf")  # model=openai


@synesthesia.hookimpl
def register_generators(register):
    register(OpenAIGenerator())
