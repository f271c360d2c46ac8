"""Page layout shared by the PNG and SVG renderers: every glyph run placed by us, in pixels.

Layouts:
- ``vertical``: classical Chinese the traditional way: one column per verse line, right to left, the
  title in the first (rightmost) column, an optional red seal after the poem. Each character is placed in
  its own cell (Pillow's ``direction='ttb'`` overlaps glyphs with some fonts).
- ``horizontal``: centred lines with per-form choices (haiku airy and centred; a sonnet's closing couplet
  indented; a limerick's short lines indented; an acrostic's initials in the accent colour).
- concrete poetry (``shape``: circle, wave, or ``mask``: a picture whose dark pixels are the shape): the
  text flows row by row inside the shape, at the largest size that fits.
- screenplay: US-letter pages in screenplay format (Courier-like, scene headings in capitals,
  character cues and dialogue at the industry indents).

Options are pydantic models; a bad value is reported with its field name.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synesthesia.errors import SynesthesiaError
from synesthesia_poetry import chinese
from synesthesia_poetry.fonts import FontFile, find_font, unrenderable

CLASSICAL_FORMS = {"五绝", "七绝", "五律", "七律", "藏头诗"}


def _check_colour(value: str) -> str:
    from PIL import ImageColor

    try:
        ImageColor.getrgb(value)
    except ValueError:
        raise ValueError(f"not a colour: {value!r} (use #rrggbb or a CSS colour name)") from None
    return value


class TextOptions(BaseModel):
    """Options of ``poem_text``."""

    model_config = ConfigDict(extra="forbid")
    script: Literal["as_is", "simplified", "traditional"] = "as_is"
    title: bool = True


class PageOptions(BaseModel):
    """Options shared by the page renderers (PNG, SVG, HTML)."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(1200, ge=200, le=10000, description="page width in pixels")
    height: int = Field(1600, ge=200, le=10000, description="page height in pixels")
    margin: int = Field(96, ge=0, description="blank border in pixels")
    background: str = Field("#f4eedf", description="paper colour (#rrggbb or a CSS colour name)")
    ink: str = Field("#1f1c18", description="text colour")
    accent: str = Field("#b3261e", description="seal and acrostic initials colour")
    font: str | None = Field(None, description="font file or family for the text")
    latin_font: str | None = Field(None, description="font file or family for Latin text (author line)")
    orientation: Literal["auto", "vertical", "horizontal"] = Field(
        "auto", description="auto: vertical right-to-left columns for classical Chinese, horizontal otherwise")
    script: Literal["as_is", "simplified", "traditional"] = Field(
        "as_is", description="Chinese characters as written, or converted")
    punctuation: bool | None = Field(None, description="None: dropped in vertical layout, kept otherwise")
    seal: bool = Field(True, description="a red seal after a vertical poem")
    seal_text: str = Field("通感之印", description="the seal's 1 to 4 characters")
    shape: Literal["none", "circle", "wave"] = Field(
        "none", description="concrete poetry: the text flows inside this shape")
    mask: Path | None = Field(None, description="picture whose dark pixels form the concrete-poetry shape")
    show_title: bool = True
    show_author: bool = Field(True, description="the credit line (the model, or the hand after an edit)")

    @field_validator("background", "ink", "accent")
    @classmethod
    def _colours(cls, value: str) -> str:
        return _check_colour(value)

    @field_validator("margin")
    @classmethod
    def _margin_fits(cls, value: int, info) -> int:
        width, height = info.data.get("width"), info.data.get("height")
        if width is not None and height is not None and 2 * value >= min(width, height) - 100:
            raise ValueError(f"margin {value} leaves no room on a {width}x{height} page")
        return value

    @field_validator("mask")
    @classmethod
    def _mask_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"mask picture {value} does not exist")
        return Path(value).expanduser() if value is not None else None

    @field_validator("seal_text")
    @classmethod
    def _seal_size(cls, value: str) -> str:
        if not 1 <= len(value.strip()) <= 4:
            raise ValueError("a seal holds 1 to 4 characters")
        return value.strip()


# --------------------------------------------------------------------------------------------------
# What a page is


@dataclass
class Run:
    """Text drawn at (x, y) with a Pillow anchor ("mm" centre, "ls" left baseline, "rs", "ms")."""

    text: str
    x: float
    y: float
    size: float
    font: FontFile
    fill: str
    anchor: str = "mm"


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    radius: float = 0.0


@dataclass
class Page:
    width: int
    height: int
    background: str
    runs: list[Run] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    layout: str = ""

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.runs)


@dataclass
class Content:
    """The text to lay out, after script conversion, with its title and author line."""

    body: str
    title: str
    author: str
    form: str
    language: str | None


def convert_script(text: str, script: str) -> str:
    if script == "as_is" or not text:
        return text
    import zhconv

    return zhconv.convert(text, "zh-hant" if script == "traditional" else "zh-hans")


def default_title(text: str, form: str, theme: str, language: str | None) -> str:
    if theme:
        return theme if language == "zh" else theme.strip().title()
    if language == "zh" or form in CLASSICAL_FORMS:
        return "无题"
    return "Untitled"


def credit(ctx: Any) -> str:
    """The page's author line: the model that wrote the text, or, once the artist has edited it
    (``synesthesia render``; the manifest's last revision is an ``edit``), the artist's hand, with the model's
    first draft acknowledged."""
    model = ctx.model_name or "unknown model"
    if "/" in model or "\\" in model:  # a checkpoint folder given as a path: its name is enough
        model = Path(model).name or model
    revisions = (ctx.manifest or {}).get("revisions") or [{}]
    last = revisions[-1] if isinstance(revisions[-1], dict) else {}
    if last.get("source") == "edit":
        return f"edited by hand (revision {last.get('revision', len(revisions))}) · first draft: Synesthesia · {model}"
    return f"Synesthesia · {model}"


def content_of(ctx: Any, script: str = "as_is") -> Content:
    body = ctx.text.strip("\n")
    title = ctx.title or default_title(body, ctx.form, ctx.theme, ctx.language)
    author = credit(ctx)
    # A character no installed font can draw (an emoji in the title) is left out of the page, with a note,
    # rather than losing the whole layout.
    lost = unrenderable(body + title)
    if lost:
        print(f"note: no installed font draws {''.join(lost)!r}; left out of the page", file=sys.stderr)
        body, title = ("".join(ch for ch in part if ch not in lost) for part in (body, title))
    return Content(convert_script(body, script), convert_script(title, script), author, ctx.form, ctx.language)


def is_vertical(content: Content, options: PageOptions) -> bool:
    if options.orientation != "auto":
        return options.orientation == "vertical"
    return content.form in CLASSICAL_FORMS or (
        content.language == "zh" and all(len(line) <= 12 for line in chinese.split_lines(content.body)))


def _measure(font: FontFile, size: float, text: str) -> float:
    return _pil_font(font, max(1, int(round(size)))).getlength(text)


_FONT_CACHE: dict[tuple, Any] = {}


def _pil_font(font: FontFile, size: int):
    key = (str(font.path), font.index, size)
    found = _FONT_CACHE.get(key)
    if found is None:
        from PIL import ImageFont

        found = ImageFont.truetype(str(font.path), size=size, index=font.index)
        if len(_FONT_CACHE) > 256:
            _FONT_CACHE.clear()
        _FONT_CACHE[key] = found
    return found


def pil_font(font: FontFile, size: float):
    return _pil_font(font, max(1, int(round(size))))


def _text_font(text: str, options: PageOptions, role: str | None = None) -> FontFile:
    has_han = any(chinese.is_han(ch) for ch in text)
    return find_font(text, role or ("cjk" if has_han else "serif"), options.font, field="font")


def _author_font(author: str, options: PageOptions, fallback: FontFile) -> FontFile:
    if options.latin_font:
        return find_font(author, "serif", options.latin_font, field="latin_font")
    try:
        return find_font(author, "serif")
    except SynesthesiaError:
        return fallback


# --------------------------------------------------------------------------------------------------
# Classical Chinese, vertical


def _seal(page: Page, x: float, y: float, side: float, text: str, font: FontFile, options: PageOptions) -> None:
    """A square red seal, characters in white, read in columns from the right."""
    page.rects.append(Rect(x, y, side, side, options.accent, radius=side * 0.06))
    chars = list(text)
    cols = 1 if len(chars) <= 2 else 2
    rows = math.ceil(len(chars) / cols)
    cell = side * 0.86 / max(rows, cols)
    inner_x = x + side / 2 + (cols - 1) * cell / 2
    inner_y = y + side / 2 - (rows - 1) * cell / 2
    for i, ch in enumerate(chars):
        col, row = divmod(i, rows)
        page.runs.append(Run(ch, inner_x - col * cell, inner_y + row * cell, cell * 0.9, font,
                             options.background, "mm"))


def vertical_page(content: Content, options: PageOptions) -> Page:
    keep_punct = bool(options.punctuation)
    lines = chinese.split_lines(content.body)
    if keep_punct:
        marks = re.findall(r"[，。！？；：、,.!?;:]", content.body)
        lines = [line + (marks[i] if i < len(marks) else "") for i, line in enumerate(lines)]
    if not lines:
        raise SynesthesiaError("nothing to lay out: the text is empty")
    title = content.title if options.show_title else ""
    seal_text = options.seal_text if options.seal else ""
    font = _text_font("".join(lines) + title + seal_text, options, "cjk")
    author_font = _author_font(content.author, options, font)
    page = Page(options.width, options.height, options.background, layout="vertical")
    m = options.margin
    footer = options.height * 0.05 if options.show_author else 0
    column_chars = max(max(len(line) for line in lines), len(title))
    # Columns: title, a blank one, the poem's, and one for the seal; each column is 1.5 cells wide.
    n_columns = len(lines) + (2 if title else 0) + (1 if seal_text else 0)
    cell = min((options.height - 2 * m - footer) / (column_chars + 0.5), (options.width - 2 * m) / (n_columns * 1.5))
    col_w = cell * 1.5
    block_w = n_columns * col_w
    x = options.width - (options.width - block_w) / 2 - col_w / 2
    top = max(m + cell * 0.5, (options.height - footer - column_chars * cell) / 2)
    if title:
        for j, ch in enumerate(title):
            page.runs.append(Run(ch, x, top + (j + 0.5) * cell, cell * 0.92, font, options.ink))
        x -= 2 * col_w
    for line in lines:
        for j, ch in enumerate(line):
            # Vertical typesetting puts 。 and ， in the upper right of their cell.
            dx, dy = (cell * 0.3, -cell * 0.3) if ch in "，。、；：！？,.;:!?" else (0.0, 0.0)
            page.runs.append(Run(ch, x + dx, top + (j + 0.5) * cell + dy, cell * 0.82, font, options.ink))
        x -= col_w
    if seal_text:
        side = cell * 1.25
        _seal(page, x - side / 2, top + column_chars * cell - side, side, seal_text, font, options)
    if options.show_author:
        size = max(10.0, min(cell * 0.32, options.height * 0.02))
        page.runs.append(Run(content.author, options.width - m, options.height - m, size, author_font,
                             options.ink, "rs"))
    return page


# --------------------------------------------------------------------------------------------------
# Horizontal


def _fit_size(font: FontFile, lines: list[str], max_width: float, max_height: float, leading: float,
              extra_lines: float) -> float:
    widest = max((_measure(font, 100, line) for line in lines if line), default=100.0) / 100
    by_width = max_width / max(widest, 1e-6)
    by_height = max_height / max(1.0, len(lines) * leading + extra_lines)
    return max(8.0, min(by_width, by_height, 160.0))


def horizontal_page(content: Content, options: PageOptions) -> Page:
    form = content.form
    raw_lines = content.body.split("\n")
    if content.language == "zh" or form in CLASSICAL_FORMS:
        lines = chinese.split_lines(content.body) if options.punctuation is False else raw_lines
    else:
        lines = [line.rstrip() for line in raw_lines]
    title = content.title if options.show_title else ""
    font = _text_font("".join(lines) + title, options)
    author_font = _author_font(content.author, options, font)
    page = Page(options.width, options.height, options.background, layout="horizontal")
    m = options.margin
    leading = 2.1 if form == "haiku" else 1.55
    indent = {("sonnet", 12), ("sonnet", 13), ("limerick", 2), ("limerick", 3)}
    size = _fit_size(font, [("    " + line) for line in lines] + [title], options.width - 2 * m,
                     options.height - 2 * m, leading, 4.0 if title else 1.5)
    y = m
    if title:
        title_size = size * 1.35
        y += title_size
        page.runs.append(Run(title, options.width / 2, y, title_size, font, options.ink, "ms"))
        y += title_size * 0.9
    if options.show_author:
        author_size = size * 0.5
        page.runs.append(Run(content.author, options.width / 2, y, author_size, author_font, options.ink, "ms"))
        y += author_size * 2.5
    centred = form in ("haiku",) or content.language == "zh" or form in CLASSICAL_FORMS
    block_w = max((_measure(font, size, line) for line in lines if line), default=0.0)
    left = (options.width - block_w) / 2
    verse_index = 0
    for line in lines:
        y += size * leading
        if not line.strip():
            continue
        if centred:
            page.runs.append(Run(line, options.width / 2, y, size, font, options.ink, "ms"))
        else:
            x = left + (size * 2 if (form, verse_index) in indent else 0)
            if form == "acrostic" and line:
                page.runs.append(Run(line[0], x, y, size, font, options.accent, "ls"))
                x += _measure(font, size, line[0])
                line = line[1:]
            page.runs.append(Run(line, x, y, size, font, options.ink, "ls"))
        verse_index += 1
    return page


# --------------------------------------------------------------------------------------------------
# Concrete poetry


def shape_test(options: PageOptions, box: tuple[float, float, float, float]) -> Callable[[float, float], bool]:
    """inside(x, y) for the chosen shape within box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if options.mask is not None:
        from PIL import Image

        try:
            with Image.open(options.mask) as picture:
                grey = picture.convert("L").resize((max(1, int(w)), max(1, int(h))))
        except OSError as exc:
            raise SynesthesiaError(f"mask: cannot read picture {options.mask}: {exc}") from None
        pixels = grey.load()

        def inside_mask(x: float, y: float) -> bool:
            px, py = int(x - x0), int(y - y0)
            return 0 <= px < grey.width and 0 <= py < grey.height and pixels[px, py] < 128

        return inside_mask
    if options.shape == "circle":
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(w, h) / 2

        def inside_circle(x: float, y: float) -> bool:
            return (x - cx) ** 2 + (y - cy) ** 2 <= r * r

        return inside_circle
    raise SynesthesiaError(f"shape: no region test for {options.shape!r}; the wave is set along its curve")


def _flow(units: list[str], widths: list[float], size: float, box, inside,
          leading: float) -> list[tuple[str, float, float]] | None:
    """Place units (characters) row by row in the shape; None if they do not all fit."""
    x0, y0, x1, y1 = box
    placed: list[tuple[str, float, float]] = []
    i = 0
    y = y0 + size * 0.6
    step = max(1.0, size / 4)
    while i < len(units):
        if y + size * 0.5 > y1:
            return None
        top, bottom = y - size * 0.45, y + size * 0.45
        x = x0
        while x < x1 and i < len(units):
            if inside(x, top) and inside(x, bottom):
                w = widths[i]
                end = x + w
                if end <= x1 and all(inside(px, top) and inside(px, bottom) for px in (x + w / 2, end)):
                    placed.append((units[i], x, y))
                    x = end
                    i += 1
                    continue
            x += step
        y += size * leading
    return placed


def _flow_wave(units: list[str], widths: list[float], size: float, box,
               leading: float) -> list[tuple[str, float, float]] | None:
    """Place units on parallel sine curves (two periods across the box); None if they do not all fit."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    amplitude = h * 0.18
    placed: list[tuple[str, float, float]] = []
    row_y = y0 + amplitude + size * 0.6
    i = 0
    while i < len(units):
        if row_y + amplitude + size * 0.5 > y1:
            return None
        x = x0
        while i < len(units) and x + widths[i] <= x1:
            centre = x + widths[i] / 2
            placed.append((units[i], x, row_y + amplitude * math.sin(2 * math.pi * 2 * (centre - x0) / w)))
            x += widths[i]
            i += 1
        row_y += size * leading
    return placed


def concrete_page(content: Content, options: PageOptions) -> Page:
    zh = content.language == "zh" or any(chinese.is_han(ch) for ch in content.body)
    title = content.title if options.show_title else ""
    if zh:
        units = [ch for ch in content.body if chinese.is_han(ch)]
    else:
        joined = " / ".join(line.strip() for line in content.body.splitlines() if line.strip())
        units = re.findall(r"\S+\s*", joined)  # whole words, each with its following space
    font = _text_font("".join(units) + title, options)
    author_font = _author_font(content.author, options, font)
    page = Page(options.width, options.height, options.background, layout="concrete")
    m = options.margin
    header = options.height * 0.07 if title else 0
    footer = options.height * 0.04 if options.show_author else 0
    box = (m, m + header, options.width - m, options.height - m - footer)
    inside = shape_test(options, box) if options.shape != "wave" or options.mask is not None else None
    unit_widths_100 = [_measure(font, 100, u) for u in units]
    lo, hi, best = 4.0, 200.0, None
    for _ in range(14):  # bisection on the font size
        size = (lo + hi) / 2
        widths = [w * size / 100 for w in unit_widths_100]
        placed = (_flow(units, widths, size, box, inside, 1.2) if inside is not None
                  else _flow_wave(units, widths, size, box, 1.5))
        if placed is None:
            hi = size
        else:
            lo, best = size, (size, placed)
    if best is None:
        raise SynesthesiaError("the text does not fit the shape even at 4 px; use a larger page, a bigger "
                               "shape (mask) or a shorter text")
    size, placed = best
    for unit, x, y in placed:
        if unit.strip():
            page.runs.append(Run(unit.rstrip(), x, y, size * 0.95, font, options.ink, "lm"))
    if title:
        page.runs.append(Run(title, options.width / 2, m + header * 0.6, header * 0.45, font, options.ink, "mm"))
    if options.show_author:
        page.runs.append(Run(content.author, options.width / 2, options.height - m, footer * 0.45,
                             author_font, options.ink, "ms"))
    return page


# --------------------------------------------------------------------------------------------------
# Screenplay

# Indents in inches from the page's left edge, and widths in characters, the usual screenplay format.
SCREENPLAY_COLUMNS = {
    "scene_heading": (1.5, 61), "action": (1.5, 61), "character": (3.7, 38), "parenthetical": (3.1, 26),
    "dialogue": (2.5, 35), "transition": (6.0, 15),
}


def screenplay_pages(content: Content, options: PageOptions) -> list[Page]:
    import textwrap

    from synesthesia_poetry.forms import fountain_elements

    elements = fountain_elements(content.body)
    if not elements:
        raise SynesthesiaError("nothing to lay out: the screenplay is empty")
    font = find_font("".join(t for _, t in elements) + content.title, "mono", options.font, field="font")
    dpi = options.width / 8.5
    size = dpi / 6  # 12 point
    line_h = size * 1.0
    top, bottom = dpi * 1.0, options.height - dpi * 1.0
    pages: list[Page] = []

    def new_page() -> Page:
        page = Page(options.width, options.height, "#ffffff", layout="screenplay")
        if pages:
            page.runs.append(Run(f"{len(pages) + 1}.", dpi * 7.5, dpi * 0.5 + size, size, font, "#000000", "rs"))
        pages.append(page)
        return page

    page = new_page()
    y = top
    if options.show_title and content.title:
        page.runs.append(Run(content.title.upper(), options.width / 2, y + size, size, font, "#000000", "ms"))
        y += line_h * 2
        if options.show_author:
            page.runs.append(Run(content.author, options.width / 2, y + size, size, font, "#000000", "ms"))
            y += line_h * 3
    previous = None
    for kind, text in elements:
        indent, width = SCREENPLAY_COLUMNS[kind]
        if kind == "scene_heading" or kind == "character":
            text = text.upper()
        wrapped = []
        for paragraph in text.split("\n"):
            wrapped += textwrap.wrap(paragraph, width) or [""]
        # A blank line between elements, except inside one speech (cue, parentheticals, dialogue).
        if previous is not None and not (kind in ("dialogue", "parenthetical") and previous in
                                         ("character", "parenthetical", "dialogue")):
            y += line_h
        if y + line_h * len(wrapped) > bottom:
            page, y = new_page(), top
        for line in wrapped:
            if kind == "transition":
                page.runs.append(Run(line, dpi * 7.5, y + size, size, font, "#000000", "rs"))
            else:
                page.runs.append(Run(line, dpi * indent, y + size, size, font, "#000000", "ls"))
            y += line_h
        previous = kind
    return pages


def page_stem(form: str) -> str:
    """The file name a page renderer writes: ``scene`` for a screenplay, ``poem`` otherwise."""
    return "scene" if form == "screenplay" else "poem"


def write_pages(ctx: Any, suffix: str, encode: Callable[[Page], bytes | str]) -> list[Path]:
    """Lay out ``ctx``'s text and write each page, encoded, into ``ctx.out_dir`` (atomically): ``poem.svg``,
    or ``scene-1.svg``, ``scene-2.svg``… when there are several pages. Returns the paths written."""
    from synesthesia.fileio import write_atomic

    pages = layout_pages(ctx, ctx.options)
    stem = page_stem(ctx.form)
    return [write_atomic(Path(ctx.out_dir) / (f"{stem}{suffix}" if len(pages) == 1 else f"{stem}-{i}{suffix}"),
                         encode(page)) for i, page in enumerate(pages, start=1)]


def layout_pages(ctx: Any, options: PageOptions) -> list[Page]:
    content = content_of(ctx, options.script)
    if not content.body.strip():
        raise SynesthesiaError("nothing to lay out: the text is empty")
    if content.form == "screenplay":
        return screenplay_pages(content, options)
    if options.shape != "none" or options.mask is not None:
        return [concrete_page(content, options)]
    if is_vertical(content, options):
        return [vertical_page(content, options)]
    return [horizontal_page(content, options)]
