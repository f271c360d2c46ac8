"""``poem_html``: a standalone HTML page (inline CSS, no external files).

Classical Chinese is set vertically with CSS ``writing-mode: vertical-rl`` (columns right to left) and a
red seal; English verse as centred stanzas with the form's indents; a screenplay in screenplay format;
concrete poetry embeds the SVG page. The manifest travels in a ``<script type="application/json">``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from synesthesia.errors import SynesthesiaError
from synesthesia.fileio import write_atomic

from synesthesia_poetry import chinese
from synesthesia_poetry.fonts import find_font, font_family
from synesthesia_poetry.layout import PageOptions, content_of, is_vertical, layout_pages

CSS = """
body { margin: 0; background: %(background)s; color: %(ink)s; font-family: %(family)s; }
main { box-sizing: border-box; min-height: 100vh; padding: %(margin)spx; display: flex; flex-direction: column;
       align-items: center; justify-content: center; }
h1 { font-weight: normal; letter-spacing: 0.08em; margin: 0 0 0.3em; }
.author { font-size: 0.8rem; opacity: 0.75; margin: 0 0 2.5em; font-family: %(latin)s; }
.poem p { margin: 0.25em 0; }
.poem .stanza { margin-bottom: 1.4em; }
.form-haiku p { line-height: 2.2; text-align: center; }
.form-sonnet .couplet, .form-limerick .short { padding-left: 2em; }
.initial { color: %(accent)s; font-weight: bold; }
/* Vertical: block flow itself runs right to left, each <p> one column; no flexbox needed. */
.vertical { display: block; writing-mode: vertical-rl; height: calc(100vh - 2 * %(margin)spx); margin: 0 auto;
            font-size: 2.2rem; letter-spacing: 0.25em; }
.vertical h1 { font-size: 2.6rem; margin: 0 0 0 1.5em; }
.vertical .poem p { margin: 0 0.35em; }
.vertical .author { writing-mode: horizontal-tb; align-self: flex-end; margin: 0 0 0 2em; letter-spacing: 0; }
.seal { display: inline-block; writing-mode: vertical-rl; background: %(accent)s; color: %(background)s;
        font-size: 1rem; line-height: 1.1; padding: 0.25em; border-radius: 0.2em; margin-top: auto; }
.screenplay { font-family: %(mono)s; font-size: 12pt; width: 6in; margin: 1in auto; background: #fff;
              color: #000; padding: 1in 1in 1in 1.5in; line-height: 1; }
.screenplay p { margin: 0 0 1em; white-space: pre-wrap; }
.screenplay .scene_heading { text-transform: uppercase; }
.screenplay .character { margin: 0; padding-left: 2.2in; text-transform: uppercase; }
.screenplay .parenthetical { margin: 0; padding-left: 1.6in; max-width: 2in; }
.screenplay .dialogue { padding-left: 1in; max-width: 3.5in; }
.screenplay .transition { text-align: right; }
"""


def _family(text: str, role: str, requested: str | None) -> str:
    """A CSS font stack naming an installed font that covers the text, then generic families."""
    generic = {"cjk": "serif", "serif": "serif", "mono": "'Courier Prime', 'Courier New', Courier, monospace"}[role]
    try:
        font = find_font(text, role, requested, field="font")
        return f"'{font_family(str(font.path), font.index)}', {generic}"
    except SynesthesiaError:
        if requested:
            raise
        return generic


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _verse_body(content, options: PageOptions) -> str:
    form = content.form
    if is_vertical(content, options):
        lines = chinese.split_lines(content.body)
        if options.punctuation:
            lines = [line for line in content.body.replace("，", "，\n").splitlines() if line.strip()]
        return "".join(f"<p>{_esc(line)}</p>" for line in lines)
    stanzas, current = [], []
    for line in content.body.split("\n"):
        if line.strip():
            current.append(line.strip())
        elif current:
            stanzas.append(current)
            current = []
    if current:
        stanzas.append(current)
    out, index = [], 0
    for stanza in stanzas:
        parts = []
        for line in stanza:
            cls = ""
            if form == "sonnet" and index >= 12:
                cls = " class=\"couplet\""
            elif form == "limerick" and index in (2, 3):
                cls = " class=\"short\""
            text = _esc(line)
            if form == "acrostic":
                text = f"<span class=\"initial\">{_esc(line[0])}</span>{_esc(line[1:])}"
            parts.append(f"<p{cls}>{text}</p>")
            index += 1
        out.append(f"<div class=\"stanza\">{''.join(parts)}</div>")
    return "".join(out)


def page_html(ctx, options: PageOptions) -> str:
    content = content_of(ctx, options.script)
    if not content.body.strip():
        raise SynesthesiaError("nothing to lay out: the text is empty")
    role = "cjk" if any(chinese.is_han(ch) for ch in content.body + content.title) else "serif"
    css = CSS % {
        "background": options.background, "ink": options.ink, "accent": options.accent, "margin": options.margin,
        "family": _family(content.body + content.title, role, options.font),
        "latin": _family(content.author, "serif", options.latin_font),
        "mono": _family(content.body, "mono", None) if content.form == "screenplay" else "monospace",
    }
    title = _esc(content.title)
    if content.form == "screenplay":
        from synesthesia_poetry.forms import fountain_elements

        body = "".join(f"<p class=\"{kind}\">{_esc(text)}</p>" for kind, text in fountain_elements(content.body))
        main = f"<div class=\"screenplay\">{body}</div>"
    elif options.shape != "none" or options.mask is not None:
        from synesthesia_poetry.svg import page_svg

        svg = page_svg(layout_pages(ctx, options)[0]).split("\n", 1)[1]
        main = f"<main>{svg}</main>"
    else:
        vertical = is_vertical(content, options)
        seal = (f"<div class=\"seal\">{_esc(options.seal_text)}</div>" if vertical and options.seal else "")
        head = f"<h1>{title}</h1>" if options.show_title else ""
        author = f"<p class=\"author\">{_esc(content.author)}</p>" if options.show_author else ""
        cls = "vertical" if vertical else ""
        main = (f"<main class=\"{cls}\">{head}{author if not vertical else ''}"
                f"<div class=\"poem form-{_esc(content.form)}\">{_verse_body(content, options)}</div>"
                f"{seal}{author if vertical else ''}</main>")
    manifest = json.dumps(ctx.manifest, ensure_ascii=False, default=str).replace("</", "<\\/")
    lang = "zh" if content.language == "zh" else "en"
    return (f"<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"generator\" content=\"{_esc(content.author)}\">\n<title>{title}</title>\n"
            f"<style>{css}</style>\n</head>\n<body>\n{main}\n"
            f"<script type=\"application/json\" id=\"synesthesia-manifest\">{manifest}</script>\n</body>\n</html>\n")


def render_html(ctx) -> list[Path]:
    stem = "scene" if ctx.form == "screenplay" else "poem"
    return [write_atomic(Path(ctx.out_dir) / f"{stem}.html", page_html(ctx, ctx.options))]
