"""``poem_text``: the poem as plain text and Markdown (and a ``.fountain`` file for a screenplay)."""

from __future__ import annotations

from pathlib import Path

from synesthesia.fileio import write_atomic
from synesthesia_poetry.layout import content_of


def markdown_verse(body: str) -> str:
    """Verse in Markdown: a hard break (two trailing spaces) ends each line; blank lines keep stanzas."""
    out = []
    for line in body.split("\n"):
        out.append(line.rstrip() + "  " if line.strip() else "")
    return "\n".join(out).rstrip() + "\n"


def render_text(ctx) -> list[Path]:
    options = ctx.options
    content = content_of(ctx, options.script)
    out = Path(ctx.out_dir)
    paths = []
    if content.form == "screenplay":
        title_page = f"Title: {content.title}\nCredit: written by\nAuthor: {content.author}\n\n"
        paths.append(write_atomic(out / "scene.fountain", title_page + content.body.strip() + "\n"))
    head = f"{content.title}\n{content.author}\n\n" if options.title else ""
    paths.append(write_atomic(out / "poem.txt", head + content.body.strip() + "\n"))
    md_head = f"# {content.title}\n\n*{content.author}*\n\n" if options.title else ""
    body = content.body.strip() + "\n" if content.form in ("screenplay", "story") else markdown_verse(content.body)
    if content.form == "screenplay":
        body = "```fountain\n" + body + "```\n"
    paths.append(write_atomic(out / "poem.md", md_head + body))
    return paths
