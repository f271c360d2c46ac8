"""``poem_html`` in a real browser: Playwright drives Debian's ``chromium``; every character's box is measured.

Each character of the poem is wrapped in a DOM Range and its client rectangles are read, so the checks are
about what Chromium laid out, not about the HTML text: in a vertical 七绝 no two glyph boxes overlap, each
verse line is one column, and the columns run right to left. Skipped (with the reason) where Chromium or
Playwright is missing; ``scripts/bootstrap.sh`` installs both.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from synesthesia.components import RenderContext
from synesthesia_poetry.html import render_html, vertical_faces
from synesthesia_poetry.layout import PageOptions

POEM = "月落乌啼霜满天，江枫渔火对愁眠。\n姑苏城外寒山寺，夜半钟声到客船。"
LINES = ["月落乌啼霜满天", "江枫渔火对愁眠", "姑苏城外寒山寺", "夜半钟声到客船"]
SONNET = ("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
          "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.")
WQY = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

# Every non-blank character under the elements matching a selector: its box as Chromium laid it out,
# and the index of the <p> (verse line) it belongs to.
GLYPH_BOXES_JS = """
(selector) => {
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const line = node.parentElement.closest('p');
      const lineIndex = line ? Array.from(line.parentElement.children).indexOf(line) : -1;
      for (let i = 0; i < node.data.length; i++) {
        const ch = node.data[i];
        if (!ch.trim()) continue;
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        for (const r of range.getClientRects()) {
          if (r.width > 0 && r.height > 0)
            out.push({ch, x: r.x, y: r.y, w: r.width, h: r.height, line: lineIndex});
        }
      }
    }
  }
  return out;
}
"""


def chromium_executable() -> str | None:
    """Debian's chromium (or $SYNESTHESIA_CHROMIUM); Playwright's own browser download cannot work here."""
    chosen = os.environ.get("SYNESTHESIA_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=chromium_executable(),
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def require_browser() -> None:
    """Skip with the reason when the browser tests cannot run on this machine."""
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    if chromium_executable() is None:
        pytest.skip("no Chromium: install Debian's chromium as root (scripts/bootstrap.sh does) "
                    "or set SYNESTHESIA_CHROMIUM to a Chromium binary")


def overlapping(boxes: list[dict], em: float = 0.0, tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of glyph boxes whose interiors intersect by more than ``tolerance`` px in both directions.

    A CJK glyph's ink fills an em square, so with ``em`` each box counts as at least ``em`` wide and tall
    (from its top left): a font whose vertical advance is smaller than its glyphs (the smudge) shows up as
    overlapping boxes even though Chromium's rectangles only span the advance."""
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            dx = min(a["x"] + max(a["w"], em), b["x"] + max(b["w"], em)) - max(a["x"], b["x"])
            dy = min(a["y"] + max(a["h"], em), b["y"] + max(b["h"], em)) - max(a["y"], b["y"])
            if dx > tolerance and dy > tolerance:
                found.append((a["ch"], b["ch"]))
    return found


def assert_vertical_columns(boxes: list[dict], lines: list[str], font_px: float) -> None:
    """Each verse line one column, read top to bottom, columns right to left, no glyph box overlapping."""
    assert "".join(b["ch"] for b in boxes) == "".join(lines), "every character laid out once"
    assert not overlapping(boxes, font_px), f"glyph boxes overlap: {overlapping(boxes, font_px)[:6]}"
    columns = [[b for b in boxes if b["line"] == i] for i in range(len(lines))]
    for column, line in zip(columns, lines):
        assert "".join(b["ch"] for b in column) == line
        xs = {round(b["x"]) for b in column}
        assert max(xs) - min(xs) <= 1, f"line {line} is not one column: x = {sorted(xs)}"
        ys = [b["y"] for b in column]
        steps = [b - a for a, b in zip(ys, ys[1:])]
        assert min(steps) >= 0.8 * font_px, f"characters of {line} are squeezed together: steps {steps}"
        assert all(b["h"] >= 0.8 * font_px for b in column)
    lefts = [column[0]["x"] for column in columns]
    assert lefts == sorted(lefts, reverse=True), "columns must run right to left"
    assert all(a - b >= font_px for a, b in zip(lefts, lefts[1:])), f"columns too close: {lefts}"


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def render(tmp_path: Path, text=POEM, form="七绝", language="zh", theme="枫桥夜泊", **options) -> Path:
    out = tmp_path / f"{form}-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    ctx = RenderContext(text=text, form=form, language=language, theme=theme, seed=3, out_dir=out,
                        options=PageOptions(**options), manifest={"seed": 3}, model_name="tang")
    [path] = render_html(ctx)
    return path


def open_page(browser, path: Path, width=1000, height=800):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(path.as_uri())
    page.evaluate("document.fonts.ready")
    return page


def font_px(page, selector: str) -> float:
    return float(page.eval_on_selector(selector, "e => parseFloat(getComputedStyle(e).fontSize)"))


def test_vertical_qijue_columns_right_to_left_without_overlapping_glyphs(browser, tmp_path):
    path = render(tmp_path)
    page = open_page(browser, path)
    try:
        page.screenshot(path=str(tmp_path / "vertical.png"))
        boxes = page.evaluate(GLYPH_BOXES_JS, ".poem")
        size = font_px(page, ".poem p")
        assert_vertical_columns(boxes, LINES, size)
        # The title, the author line and the seal stay clear of the poem and of each other.
        others = page.evaluate(GLYPH_BOXES_JS, "h1, .author, .seal")
        assert "".join(b["ch"] for b in others if b["ch"] in "枫桥夜泊") == "枫桥夜泊"
        assert not overlapping(boxes + others), overlapping(boxes + others)[:6]
        title_x = min(b["x"] for b in others if b["ch"] in "枫桥夜泊")
        assert title_x > max(b["x"] for b in boxes), "the title is the rightmost column"
        seal = page.eval_on_selector(".seal", "e => e.getBoundingClientRect().toJSON()")
        assert seal["x"] + seal["width"] <= min(b["x"] for b in boxes), "the seal follows the last column"
        # Everything is on the page, centred: nothing cut off at any edge.
        main = page.eval_on_selector("main", "e => e.getBoundingClientRect().toJSON()")
        assert main["x"] >= 0 and main["y"] >= 0 and main["x"] + main["width"] <= 1000
        assert abs((main["x"] + main["width"] / 2) - 500) < 2
    finally:
        page.close()
    from PIL import Image

    with Image.open(tmp_path / "vertical.png") as shot:
        grey = shot.convert("L")
        for box in boxes:  # every glyph box holds ink
            crop = grey.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"])))
            assert crop.getextrema()[0] < 100, f"no ink where {box['ch']} should be"


def test_the_measurement_sees_the_old_smudge(browser, tmp_path):
    """The font Debian picks first (WenQuanYi Zen Hei) has zero vertical advances: set in it, the glyph
    boxes of a column pile up. The assertion above catches exactly that."""
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei is not installed")
    page = open_page(browser, render(tmp_path))
    try:
        page.add_style_tag(content="main.vertical { font-family: 'WenQuanYi Zen Hei' !important; }")
        boxes = page.evaluate(GLYPH_BOXES_JS, ".poem")
        size = font_px(page, ".poem p")
        assert max(b["h"] for b in boxes) < 0.5 * size, "Zen Hei advances by its letter-spacing only"
        assert overlapping(boxes, size), "Zen Hei's vmtx should pile the characters up"
        with pytest.raises(AssertionError):
            assert_vertical_columns(boxes, LINES, size)
    finally:
        page.close()


def test_a_font_with_broken_vertical_metrics_is_not_put_first(tmp_path):
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei is not installed")
    names, sane = vertical_faces(POEM + "枫桥夜泊通感之印", None)
    assert sane and names[0] != "WenQuanYi Zen Hei"
    html = render(tmp_path).read_text(encoding="utf-8")
    assert f"font-family: '{names[0]}'" in html


def test_a_chosen_font_file_with_broken_metrics_gets_one_em_cells(browser, tmp_path):
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei is not installed")
    path = render(tmp_path, font=str(WQY), punctuation=True)
    assert 'class="cell"' in path.read_text(encoding="utf-8")
    page = open_page(browser, path)
    try:
        boxes = page.evaluate(GLYPH_BOXES_JS, ".poem")
        lines = ["月落乌啼霜满天，", "江枫渔火对愁眠。", "姑苏城外寒山寺，", "夜半钟声到客船。"]
        assert_vertical_columns(boxes, lines, font_px(page, ".poem p"))
    finally:
        page.close()


def test_english_verse_is_centred_and_its_lines_do_not_touch(browser, tmp_path):
    page = open_page(browser, render(tmp_path, text=SONNET, form="free", language="en", theme="summer"))
    try:
        assert page.eval_on_selector("main", "e => getComputedStyle(e).writingMode") == "horizontal-tb"
        lines = page.eval_on_selector_all(".poem p", "ps => ps.map(p => { const r = document.createRange();"
                                          " r.selectNodeContents(p); return r.getBoundingClientRect().toJSON(); })")
        assert len(lines) == 4
        for line in lines:
            assert abs(line["x"] + line["width"] / 2 - 500) < 2, "each line centred on the page"
        assert all(b["y"] >= a["y"] + a["height"] - 0.5 for a, b in zip(lines, lines[1:]))
        title = page.eval_on_selector("h1", "e => { const r = document.createRange(); r.selectNodeContents(e);"
                                      " return r.getBoundingClientRect().toJSON(); }")
        assert abs(title["x"] + title["width"] / 2 - 500) < 2 and title["y"] < lines[0]["y"]
    finally:
        page.close()


def test_no_title_or_text_can_break_out_of_the_embedded_manifest(browser, tmp_path):
    hostile = "<!--<script> a title & <b>more</b>"  # no "-->": a parser would stay inside the script
    out = tmp_path / "hostile"
    out.mkdir()
    ctx = RenderContext(text=POEM, form="七绝", language="zh", theme="秋", seed=3, out_dir=out,
                        options=PageOptions(), manifest={"seed": 3, "intent": {"title": hostile}},
                        title=hostile, model_name="tang")
    [path] = render_html(ctx)
    page = open_page(browser, path)
    embedded = page.evaluate("JSON.parse(document.getElementById('synesthesia-manifest').textContent)")
    assert embedded["intent"]["title"] == hostile  # the whole manifest, intact
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # no script was injected
    assert page.evaluate("document.body.innerText").count("alert(1)") <= 1  # shown as text at most, never run
    page.close()
