"""Finding fonts that really have the glyphs: never render tofu boxes silently.

Fonts come from fontconfig (``fc-list``), else from the usual font folders. A font is used only when its
character map covers every character it will draw (checked with fontTools); otherwise the renderer stops
with a SynesthesiaError saying which Debian package to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from synesthesia.errors import SynesthesiaError

# Preferred families, best first, per role. The Debian package that provides each is named in errors.
PREFERRED = {
    "cjk": ["Noto Serif CJK SC", "Noto Serif CJK TC", "Noto Sans CJK SC", "Source Han Serif SC",
            "AR PL UMing CN", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback"],
    "serif": ["DejaVu Serif", "Liberation Serif", "Noto Serif", "FreeSerif"],
    "sans": ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"],
    "mono": ["Courier Prime", "Liberation Mono", "DejaVu Sans Mono", "Noto Mono", "FreeMono"],
}
PACKAGE_HINT = {
    "cjk": "fonts-noto-cjk or fonts-wqy-zenhei",
    "serif": "fonts-dejavu-core",
    "sans": "fonts-dejavu-core",
    "mono": "fonts-dejavu-core",
}
FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.local/share/fonts"),
             os.path.expanduser("~/.fonts"), "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts"]
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")


@dataclass(frozen=True)
class FontFile:
    path: Path
    index: int = 0  # face number inside a .ttc collection
    family: str = ""
    style: str = ""


@functools.lru_cache(maxsize=1)
def system_fonts() -> tuple[FontFile, ...]:
    """Every font file fontconfig knows (or found in the usual folders when fontconfig is absent)."""
    found: list[FontFile] = []
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", "--format", "%{file}\t%{index}\t%{family[0]}\t%{style[0]}\n"],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0].lower().endswith(FONT_SUFFIXES):
                found.append(FontFile(Path(parts[0]), int(parts[1] or 0), parts[2], parts[3]))
    if not found:
        for folder in FONT_DIRS:
            if os.path.isdir(folder):
                for root, _, files in os.walk(folder):
                    for name in sorted(files):
                        if name.lower().endswith(FONT_SUFFIXES):
                            found.append(FontFile(Path(root) / name, 0, Path(name).stem))
    return tuple(found)


@functools.lru_cache(maxsize=64)
def font_cmap(path: str, index: int = 0) -> frozenset[int]:
    """The code points a font has glyphs for."""
    from fontTools.ttLib import TTFont

    try:
        with TTFont(path, fontNumber=index, lazy=True) as font:
            return frozenset(font.getBestCmap() or {})
    except Exception as exc:  # fontTools raises many kinds for a damaged or foreign file
        raise SynesthesiaError(f"cannot read font {path}: {exc}; give another font file") from None


@functools.lru_cache(maxsize=64)
def font_family(path: str, index: int = 0) -> str:
    from fontTools.ttLib import TTFont

    with TTFont(path, fontNumber=index, lazy=True) as font:
        name = font["name"].getBestFamilyName() if "name" in font else None
    return name or Path(path).stem


def drawable(text: str) -> set[str]:
    """The characters that need a glyph (whitespace and control characters do not)."""
    return {ch for ch in text if not ch.isspace() and ch.isprintable()}


def unrenderable(text: str) -> list[str]:
    """The characters of ``text`` that no installed font has a glyph for (an emoji without an emoji font),
    checked font by font until every character is found, so ordinary text costs one or two cmaps."""
    left = drawable(text)
    for font in system_fonts():
        if not left:
            break
        try:
            cmap = font_cmap(str(font.path), font.index)
        except SynesthesiaError:
            continue
        left = {ch for ch in left if ord(ch) not in cmap}
    return sorted(left)


def missing_glyphs(font: FontFile, text: str) -> list[str]:
    cmap = font_cmap(str(font.path), font.index)
    return sorted(ch for ch in drawable(text) if ord(ch) not in cmap)


def _by_family(fonts: Sequence[FontFile], family: str) -> list[FontFile]:
    wanted = family.lower()
    matches = [f for f in fonts if f.family.lower() == wanted]
    # Upright regular faces first: fontconfig lists a family's styles in no useful order.
    return sorted(matches, key=lambda f: (f.style.lower() not in ("regular", "book", "roman", "medium", ""),
                                          str(f.path)))


def find_font(text: str, role: str, requested: str | None = None, *,
              candidates: Iterable[FontFile] | None = None, field: str = "font") -> FontFile:
    """A font for ``role`` ("cjk", "serif", "sans", "mono") whose glyphs cover ``text``.

    ``requested`` is a font file path or a family name (option ``field``); without it the preferred
    families are tried, then every other installed font. Raises SynesthesiaError naming the characters
    no font has and the Debian package to install.
    """
    fonts = tuple(candidates) if candidates is not None else system_fonts()
    sample = "".join(sorted(drawable(text)))[:20]
    if requested:
        path = Path(requested).expanduser()
        if path.suffix.lower() in FONT_SUFFIXES or os.sep in requested:
            if not path.is_file():
                raise SynesthesiaError(f"{field}: font file {path} does not exist; give an installed font "
                                       f"(see `fc-list`) or a path to a .ttf/.otf/.ttc file")
            choice = FontFile(path, 0, path.stem)
        else:
            matches = _by_family(fonts, requested)
            if not matches:
                raise SynesthesiaError(f"{field}: no installed font family '{requested}'; see `fc-list : family` "
                                       f"for the installed ones, or give a font file path")
            choice = matches[0]
        missing = missing_glyphs(choice, text)
        if missing:
            raise SynesthesiaError(
                f"{field}: font {choice.path.name} has no glyphs for {''.join(missing[:12])!r} "
                f"({len(missing)} characters); choose a font that covers the text, e.g. from Debian package "
                f"{PACKAGE_HINT.get(role, 'fonts-noto-core')}")
        return choice
    ordered: list[FontFile] = []
    for family in PREFERRED.get(role, []):
        ordered += _by_family(fonts, family)
    ordered += [f for f in fonts if f not in ordered]
    for font in ordered:
        try:
            if not missing_glyphs(font, text):
                return font
        except SynesthesiaError:
            continue
    package = PACKAGE_HINT.get(role, "fonts-noto-core")
    raise SynesthesiaError(
        f"no installed font has glyphs for {sample!r}: install Debian package {package} "
        f"(apt-get install {package.split(' or ')[-1]}) or set the renderer's "
        f"{field} option to a font file")
