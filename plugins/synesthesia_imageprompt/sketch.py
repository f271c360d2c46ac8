"""A visual sketch of the poem's imagery, drawn with Pillow, for when no diffusion model is at hand.

Not a picture of the scene but an abstract composition from it: the palette comes from the colour, season,
time-of-day and mood words; layered ridges, water lines, a moon or sun, birds, a boat or trees appear when the
poem names them. Classical Chinese (or an ink style) is drawn as ink wash on warm paper with a red seal.
The manifest rides along in the PNG's ``synesthesia-manifest`` text chunk. Deterministic given the seed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from synesthesia.fileio import atomic_open

from .imagery import Imagery

MANIFEST_KEY = "synesthesia-manifest"
RGB = tuple[int, int, int]


@lru_cache(maxsize=1)
def _palettes() -> dict:
    return json.loads(resources.files(__package__).joinpath("data", "palettes.json").read_text(encoding="utf-8"))


def palette(imagery: Imagery) -> list[RGB]:
    """Colours named outright first, then those of the season, time of day and mood; at least three."""
    data = _palettes()
    colours: list[RGB] = []
    english = [image.en.lower() for image in imagery.images]
    for image in imagery.of_kind("colour"):
        if image.en.lower() in data["colour"]:
            colours.append(tuple(data["colour"][image.en.lower()]))
    for phrase in english:  # "yellow leaves", "red sun": the colour inside a named thing counts too
        colours.extend(tuple(data["colour"][w]) for w in phrase.split() if w in data["colour"])
    for group in ("season", "time", "mood"):
        for name, rgbs in data[group].items():
            if any(name in phrase.split() or phrase == name for phrase in english):
                colours.extend(tuple(c) for c in rgbs)
    for rgb in data["default"]:
        if len(colours) >= 3:
            break
        colours.append(tuple(rgb))
    return list(dict.fromkeys(colours))


def _names(imagery: Imagery, *words: str) -> bool:
    return any(word in image.en.lower() for image in imagery.images for word in words)


def draw(imagery: Imagery, *, width: int, height: int, seed: int, ink: bool, seal: bool | None = None):
    """The sketch as a PIL image (RGB): ink wash when ``ink``, with a red seal when ``seal`` (default: ink)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    colours = palette(imagery)
    ink_data = _palettes()["ink"]
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]

    if ink:
        paper = np.array(ink_data["paper"], np.float32)
        canvas = np.broadcast_to(paper, (height, width, 3)).copy()
        canvas += rng.normal(0, 3.0, (height, width, 1)).astype(np.float32)  # paper fibre
        far, near = np.array([150, 150, 150], np.float32), np.array(ink_data["ink"], np.float32)
        # A hint of the poem's first colour in the farthest wash, as ink painters tint with one pigment.
        tint = np.array(colours[0], np.float32)
        layer_colours = [0.75 * far + 0.25 * tint, 0.5 * (far + near), near]
    else:
        top, bottom = np.array(colours[0], np.float32), np.array(colours[1 % len(colours)], np.float32)
        t = (ys / max(1, height - 1))[..., None]  # [H, 1, 1]: a vertical sky gradient
        canvas = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()
        shades = (0.9, 0.7, 0.45)  # far ridges paler, near ones darker
        layer_colours = [np.array(colours[(i + 2) % len(colours)], np.float32) * f for i, f in enumerate(shades)]

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))

    # Moon or sun behind the ridges.
    celestial = None
    if _names(imagery, "moon"):
        celestial = (tuple(ink_data["paper"]) if ink else (245, 240, 215), (110, 110, 110))
    elif _names(imagery, "sun", "sunset", "sunlight"):
        celestial = ((200, 60, 45), None) if ink else ((250, 200, 90), None)
    if celestial:
        cx, cy = width * rng.uniform(0.6, 0.8), height * rng.uniform(0.15, 0.3)
        r = min(width, height) * 0.09
        d = ImageDraw.Draw(image)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=celestial[0], outline=celestial[1], width=2)

    canvas = np.asarray(image, np.float32).copy()
    # Ridges: far to near, each a wash that is darkest at its edge and fades into mist below.
    # Named mountains stand taller; without them the ridges are a low, abstract horizon.
    height_scale = 1.0 if _names(imagery, "mountain", "peak", "ridge", "hill", "cliff", "crag") else 0.55
    for layer in range(3):
        base = height * (0.45 + 0.13 * layer)
        amplitude = height * (0.16 - 0.035 * layer) * height_scale
        ridge = np.zeros(width, np.float32)
        for octave in range(1, 5):
            ridge += np.sin(xs[0] / width * np.pi * (octave + rng.uniform(0.5, 1.5)) + rng.uniform(0, 6.28)) / octave
        ridge = base - amplitude * ridge / 1.6
        depth = ys - ridge[None, :]
        fade = height * (0.10 + 0.05 * layer)
        alpha = np.where(depth >= 0, np.exp(-depth / fade), 0.0) * (0.55 + 0.15 * layer)
        canvas = canvas * (1 - alpha[..., None]) + layer_colours[layer] * alpha[..., None]

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    d = ImageDraw.Draw(image)
    stroke = tuple(ink_data["ink"]) if ink else tuple(int(c * 0.35) for c in colours[-1])

    if _names(imagery, "river", "water", "lake", "sea", "pond", "stream", "wave", "tide", "ferry", "rain"):
        for _ in range(14):
            y = height * rng.uniform(0.82, 0.97)
            x0 = width * rng.uniform(0.0, 0.8)
            d.line([(x0, y), (x0 + width * rng.uniform(0.05, 0.2), y)], fill=stroke, width=1)
    if _names(imagery, "bird", "geese", "goose", "crow", "swallow", "crane", "gull", "oriole", "egret"):
        for _ in range(int(rng.integers(3, 8))):
            bx, by, s = width * rng.uniform(0.15, 0.6), height * rng.uniform(0.1, 0.35), rng.uniform(5, 10)
            d.line([(bx - s, by - s * 0.5), (bx, by), (bx + s, by - s * 0.5)], fill=stroke, width=2)
    if _names(imagery, "boat", "sail", "ship"):
        bx, by, s = width * rng.uniform(0.3, 0.6), height * 0.88, width * 0.05
        d.arc([bx - s, by - s * 0.4, bx + s, by + s * 0.4], 0, 180, fill=stroke, width=3)
        d.line([(bx, by), (bx, by - s * 1.2)], fill=stroke, width=2)
    if _names(imagery, "willow", "tree", "pine", "maple", "bamboo", "vine", "forest", "bough", "branch"):
        tx = width * rng.uniform(0.05, 0.2)
        d.line([(tx, height), (tx + width * 0.02, height * 0.55)], fill=stroke, width=5)
        for _ in range(10):
            y0 = height * rng.uniform(0.55, 0.7)
            x1 = tx + width * rng.uniform(0.02, 0.12)
            d.line([(tx + width * 0.02, y0), (x1, y0 + height * rng.uniform(0.08, 0.25))], fill=stroke, width=1)
    if _names(imagery, "leaves", "leaf", "blossom", "flower", "petal", "bud", "catkin"):
        # Scattered petals or leaves in the poem's own colours (ink: in grey washes).
        for _ in range(40):
            px, py, r = width * rng.uniform(0.05, 0.95), height * rng.uniform(0.05, 0.9), rng.uniform(2, 5)
            colour = stroke if ink else colours[int(rng.integers(0, len(colours)))]
            d.ellipse([px - r, py - r * 0.6, px + r, py + r * 0.6], fill=tuple(colour))
    if ink if seal is None else seal:  # the artist's seal, in cinnabar, bottom right
        s = min(width, height) * 0.06
        x0, y0 = width - s * 2.0, height - s * 2.2
        d.rectangle([x0, y0, x0 + s, y0 + s], fill=tuple(ink_data["seal"]))
        d.rectangle([x0 + s * 0.2, y0 + s * 0.2, x0 + s * 0.8, y0 + s * 0.8], outline=tuple(ink_data["paper"]), width=2)
    return image


def save_png(image, path: Path, manifest: dict) -> Path:
    """Write ``image`` to ``path`` atomically, with the manifest in the ``synesthesia-manifest`` text chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(MANIFEST_KEY, json.dumps(manifest, ensure_ascii=False, sort_keys=True, default=str))
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG", pnginfo=info)
    return path
