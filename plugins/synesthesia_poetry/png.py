"""``poem_png``: the laid-out page as a PNG (Pillow), with the manifest in an iTXt chunk."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from synesthesia_poetry.layout import Page, pil_font, write_pages

MANIFEST_KEY = "synesthesia-manifest"


def draw_page(page: Page):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (page.width, page.height), page.background)
    draw = ImageDraw.Draw(image)
    for rect in page.rects:
        draw.rounded_rectangle((rect.x, rect.y, rect.x + rect.w, rect.y + rect.h), radius=rect.radius, fill=rect.fill)
    for run in page.runs:
        draw.text((run.x, run.y), run.text, font=pil_font(run.font, run.size), fill=run.fill, anchor=run.anchor)
    return image


def png_bytes(image, manifest: dict[str, Any]) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(MANIFEST_KEY, json.dumps(manifest, ensure_ascii=False, default=str), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, optimize=False)
    return buffer.getvalue()


def render_png(ctx) -> list[Path]:
    return write_pages(ctx, ".png", lambda page: png_bytes(draw_page(page), ctx.manifest))
