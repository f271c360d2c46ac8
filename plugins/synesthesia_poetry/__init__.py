"""Poetry plugin: poetic forms with constrained decoding and validators, and typeset layouts.

Forms: 五绝 七绝 五律 七律 藏头诗 (constrained: line length/count, 平仄, 平水韵 rhyme), haiku, sonnet,
limerick, acrostic, free verse, screenplay (Fountain), story. Renderers: ``poem_text`` (.txt + .md, and
.fountain for screenplays), ``poem_html``, ``poem_svg``, ``poem_png``.

The forms are built from the public form toolkit, ``synesthesia_poetry.toolkit`` (with the core's
``synesthesia.forms``), which third-party form plugins use too (``docs/plugins.md``).

Heavy modules (torch, Pillow, fontTools) are imported only inside the functions that need them.
"""

from __future__ import annotations

import synesthesia

__version__ = "0.1.0"


@synesthesia.hookimpl
def register_forms(register):
    from synesthesia_poetry.forms import all_forms

    for form in all_forms():
        register(form)


@synesthesia.hookimpl
def register_renderers(register):
    from synesthesia.components import Renderer
    from synesthesia_poetry.layout import PageOptions, TextOptions

    def lazy(module: str, function: str):
        def render(ctx):
            import importlib

            return getattr(importlib.import_module(f"synesthesia_poetry.{module}"), function)(ctx)

        return render

    register(Renderer(name="poem_text", description="Plain text and Markdown (and Fountain for screenplays)",
                      options=TextOptions, render=lazy("text", "render_text")))
    register(Renderer(name="poem_html", description="A standalone HTML page (vertical CJK, screenplay format)",
                      options=PageOptions, render=lazy("html", "render_html")))
    register(Renderer(name="poem_svg", description="An SVG page with every glyph placed (vertical CJK, seal, shapes)",
                      options=PageOptions, render=lazy("svg", "render_svg")))
    register(Renderer(name="poem_png", description="A PNG page (Pillow) carrying the manifest in a text chunk",
                      options=PageOptions, render=lazy("png", "render_png")))
