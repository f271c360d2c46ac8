"""``synesthesia corpus prepare chinese-poetry`` as the README writes it: where the package is found, and one
line that says how to get it when it is nowhere (the real npm fetch, 85 MB, is not run here)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.conftest import run_cli

POEMS = [{"title": "静夜思", "author": "李白", "paragraphs": ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]},
         {"title": "春晓", "author": "孟浩然", "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"]}]


def fake_package(folder: Path) -> Path:
    """The layout of the npm package: dist/quantangshi/poet.tang.N.json."""
    poems = folder / "dist" / "quantangshi"
    poems.mkdir(parents=True)
    (poems / "poet.tang.0.json").write_text(json.dumps(POEMS * 10, ensure_ascii=False), encoding="utf-8")
    return folder


def env_without_npm(tmp_path: Path) -> dict[str, str]:
    """PATH holds only the Python that runs the CLI (no npm), and an empty cache."""
    return {"PATH": str(Path(sys.executable).parent), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_without_the_package_or_npm_one_line_says_how_to_get_it(tmp_path):
    result = run_cli("corpus", "prepare", "chinese-poetry", "--out", "data/tang", cwd=tmp_path,
                     env=env_without_npm(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "npm is not installed" in result.stderr and "npm pack chinese-poetry@2.0.1" in result.stderr
    assert not (tmp_path / "data").exists()


def test_an_npm_install_here_or_a_cached_copy_is_found(tmp_path):
    env = env_without_npm(tmp_path)
    fake_package(tmp_path / "node_modules" / "chinese-poetry")
    result = run_cli("corpus", "prepare", "chinese-poetry", "--out", "data/tang", "--val-fraction", "0",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"]["train"] == 20
    first = json.loads((tmp_path / "data" / "tang" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["form"] == "五绝"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake_package(Path(env["XDG_CACHE_HOME"]) / "synesthesia" / "chinese-poetry-2.0.1" / "package")
    cached = run_cli("corpus", "prepare", "chinese-poetry", "--out", "tang", "--val-fraction", "0",
                     cwd=elsewhere, env=env)
    assert cached.returncode == 0, cached.stderr
    assert (elsewhere / "tang" / "train.jsonl").is_file() and "fetching" not in cached.stderr
    assert os.listdir(Path(env["XDG_CACHE_HOME"]) / "synesthesia") == ["chinese-poetry-2.0.1"]
