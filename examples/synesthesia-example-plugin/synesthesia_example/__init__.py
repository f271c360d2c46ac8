"""An example Synesthesia plugin: counts the words of an artwork into ``word_stats/stats.json``.

Install it (``pip install examples/synesthesia-example-plugin``) and it appears in ``synesthesia plugins``;
``synesthesia run pipeline=word_stats`` uses the pipeline config group it ships.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

import synesthesia
from synesthesia.components import RenderContext, Renderer

__version__ = "0.2.0"


class WordStatsOptions(BaseModel):
    """Options of the ``word_stats`` renderer."""

    top: int = Field(10, ge=1, le=1000, description="How many of the most frequent words to list.")
    lowercase: bool = True


def words_of(text: str, lowercase: bool) -> list[str]:
    # A CJK character counts as a word of its own; Latin words are runs of letters and apostrophes.
    tokens = re.findall(r"[\u3400-\u9fff]|[A-Za-z']+", text)
    return [t.lower() for t in tokens] if lowercase else tokens


def render_word_stats(context: RenderContext) -> list[Path]:
    options: WordStatsOptions = context.options
    lines = [line for line in context.text.splitlines() if line.strip()]
    words = words_of(context.text, options.lowercase)
    stats = {
        "lines": len(lines),
        "words": len(words),
        "distinct": len(set(words)),
        "top": Counter(words).most_common(options.top),
        "form": context.form,
        "seed": context.seed,
    }
    path = context.out_dir / "stats.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return [path]


@synesthesia.hookimpl
def register_renderers(register):
    register(Renderer(name="word_stats", description="Line and word counts, most frequent words (JSON).",
                      options=WordStatsOptions, render=render_word_stats))


@synesthesia.hookimpl
def register_config_paths(register):
    register("pkg://synesthesia_example.conf")
