"""Attention pictures: heatmaps of the attention weights of a trained model over a text.

``synesthesia attention "床前明月光" --layer 0 --head 1`` draws one PNG per (layer, head); without
``--layer``/``--head`` it draws every layer and/or every head. Layers and heads count from 0. Row *i*
of a heatmap is the query token *i*, column *j* the key token *j*: how much token *i* looks at token
*j* (rows sum to 1; the upper triangle is empty because the model is causal).

The text is shown to the model the way a prompt is at generation time: ``<bos>[controls]<sep>text``.
Axis labels are the tokens' pieces (``id_to_piece``); CJK labels need a CJK font, found through
matplotlib's font manager (WenQuanYi Zen Hei from Debian's fonts-wqy-zenhei, Noto CJK, ...).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from synesthesia.components import Conditioning
from synesthesia.errors import ConfigError
from synesthesia.fileio import atomic_path

CJK_FONT_NAMES = (
    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Noto Sans CJK", "Noto Serif CJK", "Source Han Sans",
    "Source Han Serif", "Droid Sans Fallback", "AR PL UMing", "AR PL UKai", "Sarasa",
)
CJK_FONT_FILES = ("wqy-zenhei", "wqy-microhei", "notosanscjk", "notoserifcjk", "droidsansfallback", "uming", "ukai")


def find_cjk_font() -> str | None:
    """The path of an installed font with CJK glyphs, or None."""
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if any(name.lower() in entry.name.lower() for name in CJK_FONT_NAMES):
            return entry.fname
    # The font cache may predate a font installed since; look at the files themselves.
    for path in font_manager.findSystemFonts(fontext="ttf") + font_manager.findSystemFonts(fontext="ttc"):
        stem = Path(path).stem.lower().replace("-", "").replace("_", "")
        if any(key.replace("-", "") in stem for key in CJK_FONT_FILES):
            return path
    return None


def _label(piece: str) -> str:
    return {"\n": "\\n", " ": "␣", "\t": "\\t"}.get(piece, piece).replace("$", r"\$")


def save_attention_maps(
    checkpoint: Any,
    text: str,
    out_dir: str | os.PathLike,
    layer: int | None = None,
    head: int | None = None,
    language: str | None = None,
    form: str | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Write ``layer{L}_head{H}.png`` heatmaps into ``out_dir``; return their paths (layer, head order).

    ``checkpoint`` is a folder, a registered name or a loaded ``Checkpoint``. ``layer``/``head`` None
    means all of them. ``language`` defaults to the model's only language when it was trained on one.
    """
    import torch

    from synesthesia.evaluate import _load, default_language

    ckpt = _load(checkpoint, device)
    model, tokenizer, config = ckpt.model, ckpt.tokenizer, ckpt.config
    language = default_language(tokenizer, language)
    for name, value, count in (("layer", layer, config.n_layer), ("head", head, config.n_head)):
        if value is not None and not 0 <= value < count:
            raise ConfigError(f"{name} {value} does not exist: the model has {count} {name}s, "
                              f"numbered 0 to {count - 1}")
    if not text:
        raise ConfigError("the text is empty; give some text to draw the attention over")

    ids = tokenizer.encode_conditioned(Conditioning(prefix=text, language=language, form=form))
    if len(ids) > config.block_size:
        warnings.warn(f"the text is {len(ids)} tokens; showing the last {config.block_size} (the model's context)",
                      stacklevel=2)
        ids = ids[-config.block_size :]
    labels = [_label(tokenizer.id_to_piece(i)) for i in ids]
    maps = model.attention_maps(torch.tensor([ids], device=device))  # per layer: [1, H, T, T]

    font = None
    needs_cjk = any(ord(ch) > 0x2E7F for label in labels for ch in label)
    if needs_cjk:
        font = find_cjk_font()
        if font is None:
            warnings.warn("no CJK font found, so CJK labels will show as boxes; install one "
                          "(Debian: apt-get install fonts-wqy-zenhei)", stacklevel=2)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = range(config.n_layer) if layer is None else [layer]
    heads = range(config.n_head) if head is None else [head]
    written = []
    for li in layers:
        weights = maps[li][0].float().cpu().numpy()  # [H, T, T]
        for hi in heads:
            path = out / f"layer{li}_head{hi}.png"
            _draw(weights[hi], labels, f"layer {li}, head {hi}", path, font)
            written.append(path)
    return written


def _draw(weights, labels: list[str], title: str, path: Path, font_path: str | None) -> None:
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    n = len(labels)
    # The causal upper triangle is left blank rather than drawn as zeros.
    weights = np.ma.masked_where(np.triu(np.ones((n, n), dtype=bool), k=1), weights)
    size = min(24.0, max(4.0, 0.32 * n + 1.5))
    fig = Figure(figsize=(size + 1.2, size), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    font = FontProperties(fname=font_path, size=9) if font_path else FontProperties(size=9)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, fontproperties=font, rotation=90)
    ax.set_yticklabels(labels, fontproperties=font)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # Emoji and rare characters may have no glyph in the font; a box is fine in a diagnostic picture.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        fig.savefig(tmp, format="png")
