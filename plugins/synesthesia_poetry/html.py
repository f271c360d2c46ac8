"""``poem_html``: a standalone HTML page (inline CSS, no external files).

Classical Chinese is set vertically with CSS ``writing-mode: vertical-rl`` (columns right to left: the
title, the author, one column per verse line, then a red seal at the foot of the last column); English
verse as centred stanzas with the form's indents; a screenplay in screenplay format; concrete poetry
embeds the SVG page. The manifest travels in a ``<script type="application/json">``.

Vertical text needs a font whose vertical metrics are sane: browsers advance each character down a
column by the font's ``vmtx`` advance, and some CJK fonts ship a ``vmtx`` table of zeros (WenQuanYi Zen
Hei, Debian's default CJK font, does), which piles every character of a column onto the first one. The
font stack of a vertical page therefore leads with a face that covers the text and whose vertical advances
are real (or that has no ``vmtx`` at all, so browsers synthesise one em per character): another face of
the same collection (WenQuanYi Zen Hei Mono) or another installed CJK font. When no installed face will
do, each character is set in its own one-em cell, so the columns stay legible whatever the font.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

from synesthesia.errors import SynesthesiaError
from synesthesia.fileio import write_atomic
from synesthesia_poetry import chinese
from synesthesia_poetry.fonts import FontFile, drawable, find_font, font_family, missing_glyphs, system_fonts
from synesthesia_poetry.layout import PageOptions, content_of, is_vertical, layout_pages, page_stem

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
/* Vertical: the page's block flow runs right to left, each block one column: the title, the author, one
   <p> per verse line, the seal. Columns are as long as their text; the whole is centred on the page. */
body.vertical-page { display: flex; align-items: center; justify-content: center; min-height: 100vh; }
main.vertical { display: block; writing-mode: vertical-rl; text-orientation: mixed; min-height: 0;
                max-block-size: calc(100vw - 2 * %(margin)spx); max-inline-size: calc(100vh - 2 * %(margin)spx);
                padding: 0; margin: %(margin)spx; font-size: 2.2rem; line-height: 1.5; letter-spacing: 0.2em; }
.vertical h1 { font-size: 2.6rem; line-height: 1.3; margin: 0 0 0 0.6em; letter-spacing: 0.1em; }
.vertical .author { margin: 0 0 0 2.2rem; padding-block-start: 1.2em; font-size: 0.85rem; line-height: 1;
                    letter-spacing: 0.05em; white-space: nowrap; }
.vertical .poem { display: block; }
.vertical .poem p { margin: 0 0 0 0.9em; white-space: nowrap; }
.vertical .poem p:last-child { margin: 0; }
.vertical .cell { display: inline-block; writing-mode: horizontal-tb; inline-size: 1em; block-size: 1.3em;
                  line-height: 1.3em; text-align: center; letter-spacing: 0; vertical-align: top; }
/* The seal: its characters in a square grid read in columns from the right (通感 / 之印). */
.seal { display: grid; grid-auto-flow: column; grid-template-rows: repeat(var(--rows, 2), 1.3em);
        grid-auto-columns: 1.3em; direction: rtl; writing-mode: horizontal-tb; justify-content: center;
        align-content: center; background: %(accent)s; color: %(background)s; font-size: 1rem; line-height: 1.3;
        letter-spacing: 0; padding: 0.2em; border-radius: 0.15em; width: fit-content; }
.seal span { display: block; width: 1.3em; height: 1.3em; text-align: center; }
.vertical .seal { margin: auto 0 0 0.9rem; }
.poem-centred { text-align: center; }
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


def _vmtx_ok(font: FontFile, text: str) -> bool:
    """Whether browsers can advance ``text`` down a column in this face: no ``vmtx`` (a one-em advance is
    synthesised) or a real vertical advance (at least half an em) for every character."""
    return _vmtx_ok_cached(str(font.path), font.index, "".join(sorted(drawable(text))))


@functools.lru_cache(maxsize=64)
def _vmtx_ok_cached(path: str, index: int, chars: str) -> bool:
    from fontTools.ttLib import TTFont

    try:
        with TTFont(path, fontNumber=index, lazy=True) as font:
            if "vmtx" not in font:
                return True
            cmap = font.getBestCmap() or {}
            upm = font["head"].unitsPerEm
            vmtx = font["vmtx"]
            for ch in chars:
                glyph = cmap.get(ord(ch))
                if glyph is not None and vmtx[glyph][0] < upm * 0.5:
                    return False
    except Exception:  # a font fontTools cannot read is not one to trust for columns
        return False
    return True


def vertical_faces(text: str, requested: str | None) -> tuple[list[str], bool]:
    """CSS family names for a vertical page, best first, and whether the first has sane vertical metrics.

    The face ``find_font`` picks comes first when its vertical advances are real; otherwise a face that
    covers the text with real ones (same collection first, then any installed font) leads the stack."""
    chosen = find_font(text, "cjk", requested, field="font")
    names = [font_family(str(chosen.path), chosen.index)]
    if _vmtx_ok(chosen, text):
        return names, True
    if requested and (requested.lower().endswith((".ttf", ".otf", ".ttc", ".otc")) or "/" in requested):
        return names, False  # a font file the artist chose: keep it, set characters in cells
    fonts = system_fonts()
    siblings = [f for f in fonts if f.path == chosen.path and f.index != chosen.index]
    others = [f for f in fonts if f.path != chosen.path]
    for font in siblings + others:
        try:
            if not missing_glyphs(font, text) and _vmtx_ok(font, text):
                return [font_family(str(font.path), font.index)] + names, True
        except SynesthesiaError:
            continue
    return names, False


def _stack(names: list[str], generic: str) -> str:
    return ", ".join(f"'{name}'" for name in dict.fromkeys(names)) + f", {generic}"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _cells(text: str) -> str:
    return "".join(f"<span class=\"cell\">{_esc(ch)}</span>" for ch in text)


def _verse_body(content, options: PageOptions, cells: bool = False) -> str:
    form = content.form
    if is_vertical(content, options):
        lines = chinese.split_lines(content.body)
        if options.punctuation:
            lines = [line for line in content.body.replace("，", "，\n").splitlines() if line.strip()]
        return "".join(f"<p>{_cells(line) if cells else _esc(line)}</p>" for line in lines)
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
    vertical = (content.form != "screenplay" and options.shape == "none" and options.mask is None
                and is_vertical(content, options))
    cells = False
    if vertical and role == "cjk":
        seal_text = options.seal_text if options.seal else ""
        names, sane = vertical_faces(content.body + content.title + seal_text, options.font)
        family = _stack(names, "serif")
        cells = not sane
    else:
        family = _family(content.body + content.title, role, options.font)
    css = CSS % {
        "background": options.background, "ink": options.ink, "accent": options.accent, "margin": options.margin,
        "family": family,
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
        seal = ""
        if vertical and options.seal:
            rows = 1 if len(options.seal_text) == 1 else 2
            seal = (f"<div class=\"seal\" style=\"--rows: {rows}\" title=\"{_esc(options.seal_text)}\">"
                    + "".join(f"<span>{_esc(ch)}</span>" for ch in options.seal_text) + "</div>")
        head = (f"<h1>{_cells(content.title) if cells else title}</h1>" if options.show_title else "")
        author = f"<p class=\"author\">{_esc(content.author)}</p>" if options.show_author else ""
        cls = "vertical" if vertical else ""
        # English lines are centred, except where an indent or a column of initials carries the form.
        centred = "" if vertical or content.form in ("sonnet", "limerick", "acrostic") else " poem-centred"
        main = (f"<main class=\"{cls}\">{head}{author}"
                f"<div class=\"poem form-{_esc(content.form)}{centred}\">{_verse_body(content, options, cells)}</div>"
                f"{seal}</main>")
    # <, > and & as JSON escapes: no title or text can close the script or open an HTML comment in it
    # ("<!--<script>" would make a browser read the block to the end of the file).
    manifest = (json.dumps(ctx.manifest, ensure_ascii=False, default=str)
                .replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))
    lang = "zh" if content.language == "zh" else "en"
    body_class = ' class="vertical-page"' if vertical else ""
    return (f"<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"generator\" content=\"{_esc(content.author)}\">\n<title>{title}</title>\n"
            f"<style>{css}</style>\n</head>\n<body{body_class}>\n{main}\n"
            f"<script type=\"application/json\" id=\"synesthesia-manifest\">{manifest}</script>\n</body>\n</html>\n")


def render_html(ctx) -> list[Path]:
    return [write_atomic(Path(ctx.out_dir) / f"{page_stem(ctx.form)}.html", page_html(ctx, ctx.options))]
