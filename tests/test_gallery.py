"""The gallery page through the real server: ``synesthesia serve`` in a subprocess on a free loopback port, the page
in headless Chromium (Playwright driving Debian's chromium), artworks made by the server's own jobs.

Checked as a visitor sees it: the vertical 七绝's glyph boxes (a DOM Range per character) never overlap and run in
columns right to left, the English poem is centred, the WAV loads in the page's <audio>, the MIDI and the prompt
download, the sketch shows, the provenance (model, seed, revision history) opens with one click, a new artwork
appears live through the event stream, and every request stays on the server (no CDN)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_poetry_html import (
    GLYPH_BOXES_JS,
    assert_vertical_columns,
    launch_chromium,
    overlapping,
    require_browser,
)

# A browser and a server for the module: slow as a whole (make test-fast leaves it out).
pytestmark = pytest.mark.slow

PUNCTUATION = re.compile(r"[，。！？；：、,.!?;:\s]+")


def columns(text: str) -> list[str]:
    return [c for c in PUNCTUATION.split(text) if c]


class Server:
    """``synesthesia serve`` for real, on a free port chosen by the server (``--port 0``)."""

    def __init__(self, artworks: Path, log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        env.pop("SYNESTHESIA_MIDI_PORT", None)
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "synesthesia", "serve", "--artworks", str(artworks), "--port", "0",
             "--no-warm-up", "--model", "tang", "--model", "verse"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(90) or self.url is None:
            self.stop()
            raise AssertionError("the server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            found = re.search(r"synesthesia serve: (http://127\.0\.0\.1:\d+)", line)
            if found and self.url is None:
                self.url = found.group(1)
                self.ready.set()
        self.ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.write_text("".join(self.lines), encoding="utf-8")


def make(client, intent: dict) -> dict:
    """POST an intent, wait for its job; the artwork's summary."""
    reply = client.post("/v1/artworks", json=intent)
    assert reply.status_code == 202, reply.text
    job = reply.json()
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get(job["url"]).json()
    assert job["status"] == "succeeded", job
    return client.get(job["artwork_url"]).json()


FAST = {"generation": {"candidates": 2, "max_attempts": 1}}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    require_browser()
    pytest.importorskip("synesthesia.server.command", reason="synesthesia serve is not in this checkout")
    import httpx
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("gallery")
    server = Server(root / "artworks", root / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            zh = make(client, {"form": "七绝", "theme": "秋月", "seed": 1, **FAST})
            en = make(client, {"form": "haiku", "theme": "winter sea", "seed": 2, **FAST})
            # A revision: the artist edits the text and re-renders; the manifest keeps the history.
            from synesthesia.pipeline import render_revision

            run_dir = root / "artworks" / zh["id"].replace("~", "/")
            text_path = run_dir / "artwork" / "text.txt"
            old = text_path.read_text(encoding="utf-8")
            text_path.write_text(("霜" if old[0] != "霜" else "秋") + old[1:], encoding="utf-8")
            render_revision(run_dir, log=lambda m: None)
            zh = client.get(zh["url"]).json()  # the server re-reads a manifest when its detail is asked for
            assert zh["revision"] == 2
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                yield {"server": server, "client": client, "zh": zh, "en": en, "browser": browser, "root": root}
                browser.close()
    finally:
        server.stop()


def open_gallery(gallery, requests: list[str] | None = None):
    page = gallery["browser"].new_page(viewport={"width": 1280, "height": 900})
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(gallery["server"].url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(100)
    assert not errors, errors
    return page


def test_poems_are_set_vertically_and_centred(gallery, tmp_path):
    page = open_gallery(gallery)
    try:
        zh_id = gallery["zh"]["id"]
        article = f"article[data-id='{zh_id}']"
        zh = page.locator(article)
        assert page.eval_on_selector(f"{article} .poem", "e => getComputedStyle(e).writingMode") == "vertical-rl"
        text = json.loads(page.evaluate(f"fetch('/v1/artworks/{zh_id}').then(r => r.text())"))["text"]
        boxes = page.evaluate(GLYPH_BOXES_JS, f"{article} .verse")
        size = float(page.eval_on_selector(f"{article} .verse p", "e => parseFloat(getComputedStyle(e).fontSize)"))
        assert_vertical_columns(boxes, columns(text), size)
        head = page.evaluate(GLYPH_BOXES_JS, f"{article} .title, {article} .byline")
        assert not overlapping(boxes + head), overlapping(boxes + head)[:6]
        assert min(b["x"] for b in head) > max(b["x"] for b in boxes), "title and byline stand right of the poem"
        panel = page.eval_on_selector(f"{article} .poem-panel", "e => e.getBoundingClientRect().toJSON()")
        assert all(panel["x"] <= b["x"] and b["x"] + b["w"] <= panel["x"] + panel["width"] for b in boxes + head)
        zh.screenshot(path=str(tmp_path / "zh.png"))

        article = f"article[data-id='{gallery['en']['id']}']"
        assert page.eval_on_selector(f"{article} .poem", "e => getComputedStyle(e).writingMode") == "horizontal-tb"
        panel = page.eval_on_selector(f"{article} .poem-panel", "e => e.getBoundingClientRect().toJSON()")
        lines = page.eval_on_selector_all(f"{article} .verse p", "ps => ps.map(p => { const r = document.createRange();"
                                          " r.selectNodeContents(p); return r.getBoundingClientRect().toJSON(); })")
        assert len(lines) == len([line for line in gallery["en"]["text"].splitlines() if line.strip()])
        middle = panel["x"] + panel["width"] / 2
        assert all(abs(box["x"] + box["width"] / 2 - middle) < 2 for box in lines), "English lines are centred"
        page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
    finally:
        page.close()


def test_media_downloads_and_provenance(gallery, tmp_path):
    requests: list[str] = []
    page = open_gallery(gallery, requests)
    try:
        article = f"article[data-id='{gallery['zh']['id']}']"
        # The melody plays in the page: the browser loads the WAV and knows its length.
        duration = page.eval_on_selector(f"{article} audio.melody", """a => new Promise((ok, fail) => {
            a.addEventListener('loadedmetadata', () => ok(a.duration), {once: true});
            a.addEventListener('error', () => fail(new Error('audio error ' + (a.error && a.error.code))),
                               {once: true});
            a.preload = 'auto'; a.load(); })""")
        assert duration > 5
        # The sketch shows.
        page.wait_for_function(f"document.querySelector(\"{article} img.sketch\").complete")
        assert page.eval_on_selector(f"{article} img.sketch", "i => i.naturalWidth") > 100
        # The MIDI and the prompt download.
        with page.expect_download() as info:
            page.click(f"{article} a[data-file='midi/melody.mid']")
        assert Path(info.value.path()).read_bytes()[:4] == b"MThd"
        with page.expect_download() as info:
            page.click(f"{article} a[data-file='imageprompt/prompt.txt']")
        run_dir = gallery["root"] / "artworks" / gallery["zh"]["id"].replace("~", "/")
        prompt = (run_dir / "artwork" / "imageprompt" / "prompt.txt").read_text(encoding="utf-8")
        assert Path(info.value.path()).read_text(encoding="utf-8") == prompt
        # The provenance is one click away: model, seed, the revision history.
        page.click(f"{article} details.provenance summary")
        page.wait_for_selector(f"{article} .provenance dl")
        facts = dict(zip(page.locator(f"{article} .provenance dt").all_inner_texts(),
                         page.locator(f"{article} .provenance dd").all_inner_texts()))
        assert facts["model"].startswith("tang") and facts["seed"] == "1"
        assert facts["checkpoint"].startswith("sha256 ")
        rows = page.locator(f"{article} .provenance table.revisions tr").all_inner_texts()
        assert len(rows) == 3 and "model" in rows[1] and "edit" in rows[2]
        assert "synesthesia run form=七绝" in page.inner_text(f"{article} .provenance code.reproduce")
        page.screenshot(path=str(tmp_path / "provenance.png"), full_page=True)
    finally:
        page.close()
    origin = gallery["server"].url
    assert requests and all(u.startswith(origin) or u.startswith("data:") for u in requests), \
        [u for u in requests if not u.startswith(origin)]


def test_a_new_artwork_appears_live(gallery, tmp_path):
    page = open_gallery(gallery)
    try:
        page.wait_for_selector("body[data-live='1']", timeout=10000)
        before = page.eval_on_selector_all("article", "a => a.map(e => e.dataset.id)")
        new = make(gallery["client"], {"form": "七绝", "theme": "江雪", "seed": 5, **FAST})
        article = f"article[data-id='{new['id']}']"
        page.wait_for_selector(article, timeout=15000)  # pushed by the event stream, no reload
        assert page.eval_on_selector_all("article", "a => a.map(e => e.dataset.id)") == [new["id"], *before]
        assert page.eval_on_selector(article, "e => e.classList.contains('featured')")
        page.evaluate("document.fonts.ready")
        boxes = page.evaluate(GLYPH_BOXES_JS, f"{article} .verse")
        size = float(page.eval_on_selector(f"{article} .verse p", "e => parseFloat(getComputedStyle(e).fontSize)"))
        assert_vertical_columns(boxes, columns(new["text"]), size)
        page.screenshot(path=str(tmp_path / "live.png"))
    finally:
        page.close()


def test_an_installation_feeding_the_server_appears_live(gallery, tmp_path):
    """``synesthesia installation --server URL``: the server makes each artwork, so the page shows it live; the
    loop still sends it over OSC (received by a real python-osc server) with paths in the shared folder."""
    from tests.test_installation import OscReceiver

    osc = OscReceiver()
    page = open_gallery(gallery)
    try:
        page.wait_for_selector("body[data-live='1']", timeout=10000)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "synesthesia", "installation", "--artworks", str(gallery["root"] / "artworks"),
             "--server", gallery["server"].url, "--theme", "春江", "--count", "1", "--osc-out",
             f"127.0.0.1:{osc.port}", "generation.candidates=2", "generation.max_attempts=1"],
            capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(osc.of("/synesthesia/artwork/done")) == 1, (osc.messages, done.stderr)
        [(seq, artwork_id, path)] = osc.of("/synesthesia/artwork/done")
        assert seq == 1 and Path(path, "manifest.json").is_file()
        page.wait_for_selector(f"article[data-id='{artwork_id}']", timeout=15000)
        order = page.eval_on_selector_all("article", "a => a.map(e => [e.dataset.id, e.dataset.created])")
        assert order[0][0] == artwork_id, order
        notes = osc.of("/synesthesia/artwork/note")
        assert len([n for n in notes if n[5] == 0]) == 28
        state = json.loads((gallery["root"] / "artworks" / ".synesthesia-installation.json").read_text())
        assert state["owned"] == [artwork_id]
    finally:
        page.close()
        osc.close()
