"""Poetry layouts: real files written, then parsed back (PNG via Pillow, SVG and HTML via parsers)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from synesthesia.components import RenderContext
from synesthesia.errors import SynesthesiaError
from synesthesia.plugins import Registry
from synesthesia_poetry import fonts
from synesthesia_poetry.layout import PageOptions, TextOptions, layout_pages
from synesthesia_poetry.png import MANIFEST_KEY

POEM = "月落乌啼霜满天，江枫渔火对愁眠。\n姑苏城外寒山寺，夜半钟声到客船。"
HAIKU = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again"
SCENE = "INT. LIGHTHOUSE - NIGHT\n\nRain hammers the glass.\n\nMARA\n(breathless)\nThe lamp is out.\n\nCUT TO:"
MANIFEST = {"model": {"name": "tang", "sha256": "ab" * 32}, "seed": 7, "intent": {"form": "七绝", "theme": "秋月"}}


@pytest.fixture(scope="module")
def renderers():
    registry = Registry()
    import synesthesia_poetry

    registry.register_module(synesthesia_poetry, "poetry")
    return registry.renderers()


def context(tmp_path: Path, options, text=POEM, form="七绝", language="zh", theme="枫桥夜泊", name="out"):
    out = tmp_path / name
    out.mkdir(parents=True, exist_ok=True)
    return RenderContext(text=text, form=form, language=language, theme=theme, seed=7, out_dir=out,
                         options=options, manifest=MANIFEST, model_name="tang")


def test_all_four_renderers_are_registered(renderers):
    assert {"poem_text", "poem_html", "poem_svg", "poem_png"} <= set(renderers)
    for name in ("poem_html", "poem_svg", "poem_png"):
        assert renderers[name].options is PageOptions
        renderers[name].options()  # valid defaults


def test_png_vertical_layout_carries_the_manifest_and_covers_its_glyphs(tmp_path, renderers):
    ctx = context(tmp_path, PageOptions(width=900, height=1200), theme="旅思")  # no character shared with the poem
    [path] = renderers["poem_png"].render(ctx)
    assert path.parent == ctx.out_dir and path.suffix == ".png"
    assert not [p for p in ctx.out_dir.iterdir() if p.name.startswith(".")], "a temp file was left behind"
    with Image.open(path) as image:
        assert image.size == (900, 1200)
        assert json.loads(image.text[MANIFEST_KEY]) == MANIFEST
        pixels = image.convert("RGB")
        # Ink was drawn: some pixels are dark, and the seal put red ones on the page.
        colours = {c for _, c in pixels.getcolors(maxcolors=1 << 20)}
        assert any(sum(c) < 200 for c in colours)
        assert any(r > 150 and g < 80 and b < 80 for r, g, b in colours)
    [page] = layout_pages(ctx, PageOptions(width=900, height=1200))
    body = [r for r in page.runs if len(r.text) == 1 and r.text in POEM]
    # Columns right to left: the first line's column is right of the last line's; within one column, top to bottom.
    first = [r for r in body if r.text in "月落乌啼霜满天"]
    last = [r for r in body if r.text in "夜半钟声到客船"]
    assert min(r.x for r in first) > max(r.x for r in last)
    assert [r.y for r in first] == sorted(r.y for r in first)
    # No glyph overlaps another: each character has its own cell.
    cells = {(round(r.x), round(r.y)) for r in body}
    assert len(cells) == len(body)
    for run in page.runs:
        assert not fonts.missing_glyphs(run.font, run.text), run


def test_svg_parses_and_places_every_character(tmp_path, renderers):
    ctx = context(tmp_path, PageOptions(script="traditional"))
    [path] = renderers["poem_svg"].render(ctx)
    root = ET.parse(path).getroot()
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 1200 1600"
    assert root.get("width") is None and root.get("height") is None, "scales to the window, not a fixed size"
    texts = "".join(t.text or "" for t in root.findall(".//svg:text", ns))
    for ch in "月落烏啼霜滿天江楓漁火對愁眠":  # converted to traditional characters
        assert ch in texts
    assert "Synesthesia · tang" in texts
    assert json.loads(root.find("svg:metadata", ns).text)["seed"] == 7


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.data, self.script = [], [], None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script = data
        else:
            self.data.append(data)


def test_html_is_a_standalone_page(tmp_path, renderers):
    ctx = context(tmp_path, PageOptions())
    [path] = renderers["poem_html"].render(ctx)
    parser = _Collector()
    parser.feed(path.read_text(encoding="utf-8"))
    tags = [t for t, _ in parser.tags]
    assert tags[:2] == ["html", "head"] and "style" in tags
    assert not any(t in ("link", "img") for t in tags), "the page must not need other files"
    assert any(t == "main" and "vertical" in a.get("class", "") for t, a in parser.tags)
    assert "姑苏城外寒山寺" in "".join(parser.data) and "Synesthesia · tang" in "".join(parser.data)
    assert json.loads(parser.script) == MANIFEST


def test_text_and_markdown(tmp_path, renderers):
    ctx = context(tmp_path, TextOptions(), text=HAIKU, form="haiku", language="en", theme="winter sea")
    paths = renderers["poem_text"].render(ctx)
    assert {p.name for p in paths} == {"poem.txt", "poem.md"}
    assert (ctx.out_dir / "poem.txt").read_text().startswith("Winter Sea\nSynesthesia · tang\n\nAn old silent pond\n")
    md = (ctx.out_dir / "poem.md").read_text()
    assert md.startswith("# Winter Sea\n") and "An old silent pond  \n" in md


def test_screenplay_fountain_and_page_format(tmp_path, renderers):
    ctx = context(tmp_path, TextOptions(), text=SCENE, form="screenplay", language="en", theme="The Lamp")
    renderers["poem_text"].render(ctx)
    fountain = (ctx.out_dir / "scene.fountain").read_text()
    assert fountain.startswith("Title: The Lamp\n") and "INT. LIGHTHOUSE - NIGHT" in fountain
    page_ctx = context(tmp_path, PageOptions(width=850, height=1100), text=SCENE, form="screenplay",
                       language="en", theme="The Lamp", name="page")
    [png] = renderers["poem_png"].render(page_ctx)
    with Image.open(png) as image:
        assert image.size == (850, 1100)
    [page] = layout_pages(page_ctx, PageOptions(width=850, height=1100))
    x = {r.text: r.x for r in page.runs}
    dpi = 100
    assert x["INT. LIGHTHOUSE - NIGHT"] == pytest.approx(1.5 * dpi)
    assert x["MARA"] == pytest.approx(3.7 * dpi) and x["The lamp is out."] == pytest.approx(2.5 * dpi)
    [html_path] = renderers["poem_html"].render(page_ctx)
    assert 'class="character">MARA<' in html_path.read_text()


@pytest.mark.parametrize("shape", ["circle", "wave"])
def test_concrete_poetry_stays_inside_its_shape(tmp_path, shape):
    options = PageOptions(shape=shape, width=1000, height=1000, margin=50)
    ctx = context(tmp_path, options, text=HAIKU, form="haiku", language="en", theme="pond")
    [page] = layout_pages(ctx, options)
    words = [r for r in page.runs if r.text in HAIKU and r.text not in ("Pond",) and "Synesthesia" not in r.text]
    assert " ".join(r.text for r in words if r.text != "/") == HAIKU.replace("\n", " ")
    if shape == "circle":
        header = 1000 * 0.07
        cx, cy = 500, (50 + header + 1000 - 50 - 1000 * 0.04) / 2
        radius = min(900, 1000 - 100 - header - 40) / 2
        for run in words:
            assert (run.x - cx) ** 2 + (run.y - cy) ** 2 <= radius ** 2 + 1


def test_concrete_poetry_from_a_mask_picture(tmp_path):
    from PIL import ImageDraw

    mask = tmp_path / "heart.png"
    picture = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(picture).rectangle((0, 100, 200, 200), fill=0)  # the lower half is the shape
    picture.save(mask)
    options = PageOptions(mask=mask, width=800, height=800, margin=40, show_title=False, show_author=False)
    [page] = layout_pages(context(tmp_path, options), options)
    assert page.runs and all(r.y > 40 + (800 - 80) / 2 - 1 for r in page.runs)


def test_bad_options_name_the_field():
    from pydantic import ValidationError

    for kwargs, field in [({"width": 10}, "width"), ({"ink": "not-a-colour"}, "ink"), ({"margin": 700}, "margin"),
                          ({"orientation": "diagonal"}, "orientation"), ({"mask": "/no/such.png"}, "mask"),
                          ({"seal_text": "五个字的印"}, "seal_text"), ({"colour": "red"}, "colour")]:
        with pytest.raises(ValidationError) as info:
            PageOptions(**kwargs)
        assert info.value.errors()[0]["loc"] == (field,), (kwargs, info.value.errors())


def test_missing_fonts_give_a_clear_error(tmp_path):
    latin_only = [f for f in fonts.system_fonts() if f.family == "DejaVu Sans"]
    with pytest.raises(SynesthesiaError, match="fonts-noto-cjk or fonts-wqy-zenhei"):
        fonts.find_font(POEM, "cjk", candidates=latin_only)
    with pytest.raises(SynesthesiaError, match="font: font file .* does not exist"):
        fonts.find_font(POEM, "cjk", "/no/such/font.ttf")
    ctx = context(tmp_path, PageOptions(font=str(latin_only[0].path)))
    with pytest.raises(SynesthesiaError, match="has no glyphs for"):
        layout_pages(ctx, ctx.options)


def test_svg_page_fits_a_small_browser_window_whole(tmp_path, renderers):
    from tests.test_poetry_html import launch_chromium, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    [path] = renderers["poem_svg"].render(context(tmp_path, PageOptions()))  # a 1200 x 1600 page
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 500, "height": 400})
            page.goto(path.as_uri())
            box = page.evaluate("(() => { const r = document.documentElement.getBoundingClientRect();"
                                " const t = [...document.querySelectorAll('text')].map(e => e.getBoundingClientRect());"
                                " return {w: r.width, h: r.height, right: Math.max(...t.map(b => b.right)),"
                                " bottom: Math.max(...t.map(b => b.bottom)), sw: document.documentElement.scrollWidth,"
                                " sh: document.documentElement.scrollHeight}; })()")
        finally:
            browser.close()
    assert box["right"] <= 500 and box["bottom"] <= 400, f"the page is cropped in the window: {box}"
    assert box["sw"] <= 500 and box["sh"] <= 400, f"scroll bars: {box}"
    assert box["bottom"] > 300, f"scaled to fit, not shrunk to nothing: {box}"


def test_after_an_edit_the_page_credits_the_hand_not_the_model(tmp_path, renderers):
    edited = {**MANIFEST, "revision": 2, "revisions": [{"revision": 1, "source": "model"},
                                                       {"revision": 2, "source": "edit"}]}
    for name in ("poem_svg", "poem_html", "poem_png"):
        ctx = context(tmp_path, PageOptions(), name=name)
        ctx.manifest = edited
        [path] = renderers[name].render(ctx)
        if name == "poem_png":
            from synesthesia_poetry.layout import content_of

            assert content_of(ctx).author.startswith("edited by hand (revision 2)")
            continue
        written = path.read_text(encoding="utf-8")
        assert "edited by hand (revision 2) · first draft: Synesthesia · tang" in written, name
    model_written = context(tmp_path, PageOptions(), name="model")
    [path] = renderers["poem_svg"].render(model_written)
    assert "edited by hand" not in path.read_text(encoding="utf-8")


def test_a_long_scene_is_written_page_by_page_by_every_page_renderer(tmp_path, renderers):
    long_scene = "\n\n".join([SCENE.replace("\n\nCUT TO:", "")] * 12) + "\n\nCUT TO:"
    for name, suffix in (("poem_svg", ".svg"), ("poem_png", ".png")):
        ctx = context(tmp_path, PageOptions(width=850, height=1100), text=long_scene, form="screenplay",
                      language="en", theme="The Lamp", name=name)
        paths = renderers[name].render(ctx)
        assert len(paths) >= 2 and [p.name for p in paths] == [f"scene-{i}{suffix}" for i in range(1, len(paths) + 1)]
        assert sorted(ctx.out_dir.iterdir()) == sorted(paths)
