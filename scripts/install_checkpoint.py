"""Copy a finished training run's float16 export into the transformer plugin as a shipped checkpoint.

    python scripts/install_checkpoint.py runs/tang tang --keywords work-data/tang/keywords.json

Writes plugins/synesthesia_transformer/checkpoints/NAME/{model.safetensors, config.json, tokenizer.json,
keywords.json, metrics.jsonl, loss.png}; the training figures (the shipped weights' validation loss and
step: the best evaluation's when the trainer kept one, else the last's; speed) go into config.json's
"meta". The folder is filled in a temporary sibling and renamed into place, and a MODEL_CARD.md already
there is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from synesthesia.fileio import swap_into_place

ROOT = Path(__file__).resolve().parents[1]
FILES = ("model.safetensors", "config.json", "tokenizer.json")


def training_figures(metrics: Path, best_step: int | None = None) -> dict:
    """Steps, losses and speed from a run's metrics.jsonl. With ``best_step`` (the export holds the weights
    of that evaluation: early stopping), val_loss and train_loss are that evaluation's and ``steps`` is
    that step; ``steps_trained`` is how far training went."""
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    evals = [r for r in rows if "val_loss" in r]
    steps = [r for r in rows if "tokens_per_s" in r]
    trained = max((r["step"] for r in rows), default=0)
    figures = {"steps": trained}
    if evals:
        shipped = next((r for r in evals if r["step"] == best_step), evals[-1])
        figures.update(val_loss=round(shipped["val_loss"], 4), train_loss=round(shipped["eval_train_loss"], 4),
                       best_val_loss=round(min(r["val_loss"] for r in evals), 4))
        if best_step is not None and shipped["step"] == best_step:
            figures.update(steps=best_step, steps_trained=trained)
    if steps:
        figures["tokens_per_s_median"] = sorted(r["tokens_per_s"] for r in steps)[len(steps) // 2]
    return figures


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run's out_dir (holds export/ and metrics.jsonl)")
    parser.add_argument("name", help="checkpoint name, e.g. tang")
    parser.add_argument("--keywords", type=Path, help="keywords.json from `synesthesia corpus prepare`")
    parser.add_argument("--meta", default="{}", help="extra JSON merged into the checkpoint's meta")
    args = parser.parse_args(argv)
    export = args.run / "export"
    missing = [name for name in FILES if not (export / name).is_file()]
    if missing:
        sys.exit(f"{export}: missing {', '.join(missing)}; train with export_dtype=float16 first")
    target = ROOT / "plugins" / "synesthesia_transformer" / "checkpoints" / args.name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.name}-", dir=target.parent))
    try:
        for name in FILES:
            shutil.copy2(export / name, tmp / name)
        if args.keywords:
            shutil.copy2(args.keywords, tmp / "keywords.json")
        for name in ("metrics.jsonl", "loss.png"):
            if (args.run / name).is_file():
                shutil.copy2(args.run / name, tmp / name)
        if (target / "MODEL_CARD.md").is_file():
            shutil.copy2(target / "MODEL_CARD.md", tmp / "MODEL_CARD.md")
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        meta = config.setdefault("meta", {})
        if (args.run / "metrics.jsonl").is_file():
            meta.update(training_figures(args.run / "metrics.jsonl", meta.get("best_step")))
        meta.update(json.loads(args.meta))
        meta["card"] = "MODEL_CARD.md"
        (tmp / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(target)
    return target


if __name__ == "__main__":
    main()
