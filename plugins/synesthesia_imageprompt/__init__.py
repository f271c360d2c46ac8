"""Image-prompt plugin: prompts for diffusion tools and an offline visual sketch.

The ``imageprompt`` renderer extracts a poem's imagery (English or classical Chinese), builds a prompt in a
style preset within CLIP's 77-token budget, and writes it for A1111, ComfyUI and diffusers, with dynamicprompts
variations and a Pillow sketch. Heavy modules (jieba, Pillow, numpy, dynamicprompts) load only when rendering.
"""

from __future__ import annotations

import synesthesia
from synesthesia.components import RenderContext, Renderer

from .prompt import ImagePromptOptions


def _render(context: RenderContext):
    from .render import render

    return render(context)


@synesthesia.hookimpl
def register_renderers(register):
    register(
        Renderer(
            name="imageprompt",
            description="Diffusion prompts from the poem's imagery (A1111, ComfyUI, diffusers), variations, "
            "and a sketch PNG.",
            options=ImagePromptOptions,
            render=_render,
        )
    )
