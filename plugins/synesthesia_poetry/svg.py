"""``poem_svg``: the laid-out page as SVG; every glyph run is a ``<text>`` at the position we chose."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from synesthesia_poetry.fonts import font_family
from synesthesia_poetry.layout import Page, write_pages

SVG_NS = "http://www.w3.org/2000/svg"
# Pillow anchors → SVG text-anchor and dominant-baseline.
ANCHORS = {"m": "middle", "l": "start", "r": "end"}
BASELINES = {"m": "central", "s": "alphabetic"}


# Characters XML 1.0 cannot hold (NUL, ESC and the other C0 controls but tab and line breaks; lone
# surrogates): left out of the SVG so it stays well-formed whatever the text holds.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("", text)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def page_svg(page: Page, manifest: dict | None = None, title: str = "") -> str:
    ET.register_namespace("", SVG_NS)
    # No fixed width and height: the page scales to the browser window (or the element it is put in), whole,
    # at its own proportions; the viewBox gives those proportions and the coordinates.
    root = ET.Element(f"{{{SVG_NS}}}svg", {"viewBox": f"0 0 {page.width} {page.height}",
                                             "preserveAspectRatio": "xMidYMid meet"})
    if title:
        ET.SubElement(root, f"{{{SVG_NS}}}title").text = _xml(title)
    if manifest is not None:
        meta = ET.SubElement(root, f"{{{SVG_NS}}}metadata", {"id": "synesthesia-manifest"})
        meta.text = _xml(json.dumps(manifest, ensure_ascii=False, default=str))
    ET.SubElement(root, f"{{{SVG_NS}}}rect", {"width": "100%", "height": "100%", "fill": page.background})
    for rect in page.rects:
        ET.SubElement(root, f"{{{SVG_NS}}}rect", {"x": _num(rect.x), "y": _num(rect.y), "width": _num(rect.w),
                                                   "height": _num(rect.h), "rx": _num(rect.radius),
                                                   "fill": rect.fill})
    families: dict[tuple[str, int], str] = {}
    for run in page.runs:
        key = (str(run.font.path), run.font.index)
        if key not in families:
            families[key] = font_family(*key)
        node = ET.SubElement(root, f"{{{SVG_NS}}}text", {
            "x": _num(run.x), "y": _num(run.y), "font-size": _num(run.size), "fill": run.fill,
            "font-family": f"'{families[key]}', serif", "text-anchor": ANCHORS[run.anchor[0]],
            "dominant-baseline": BASELINES.get(run.anchor[1], "alphabetic"),
        })
        node.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
        node.text = _xml(run.text)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_svg(ctx) -> list[Path]:
    return write_pages(ctx, ".svg", lambda page: page_svg(page, ctx.manifest, ctx.title or ctx.theme))
