"""Poetry plugin: poetic forms with constrained decoding and validators, and typeset layouts.

Forms: 五绝 七绝 五律 七律 藏头诗 (constrained: line length/count, 平仄, 平水韵 rhyme), haiku, sonnet,
limerick, acrostic, free verse, screenplay (Fountain), story. Renderers: ``poem_text`` (.txt + .md, and
.fountain for screenplays), ``poem_html``, ``poem_svg``, ``poem_png``.

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
