"""A small melody language model trained with our own core (``synesthesia.model.GPT``).

Tokens: one per note, its pitch in semitones above (or below) the tune's final note, from -12 to +24;
a strong-beat marker ``|`` before every note that starts on a strong beat; a start token per family
(``<zh>`` Han Chinese songs, ``<west>`` German and Irish folk songs, Bach soprano lines). So the model
learns contour and tonality together, conditioned on the metre. Trained on the same music21 tunes as
``corpus_stats`` (every tenth tune held out for validation)::

    python -m synesthesia_midi.melody_model            # parse the corpus (minutes), train, save
    python -m synesthesia_midi.melody_model --resume   # continue an interrupted run from runs/melody_gpt

Training is ``synesthesia.train``'s loop (``start_run`` + ``fit``: checkpoints, metrics.jsonl, loss.png and
resume in ``runs/melody_gpt``); the result is written with ``save_checkpoint`` to ``data/melody_gpt/``
(``model.safetensors`` and ``config.json``, no tokenizer: the tokens are this module's; well under a
megabyte), which ships with the package. The pitch chooser uses it with ``pitch_model="gpt"`` in place of the
interval and degree statistics; the constraints (scale, range, chord tones, cadences, tone contour) stay rules.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from synesthesia.errors import CheckpointError

MODEL_DIR = Path(__file__).parent / "data" / "melody_gpt"
LOW, HIGH = -12, 24
PITCH_TOKENS = HIGH - LOW + 1  # ids 0..36
STRONG = PITCH_TOKENS  # "|"
START = {"zh": PITCH_TOKENS + 1, "west": PITCH_TOKENS + 2}
VOCAB_SIZE = PITCH_TOKENS + 3
MODEL_SHAPE = dict(block_size=128, n_layer=3, n_head=4, n_embd=64, dropout=0.0, bias=True, pos="learned")


def pitch_token(relative: int) -> int:
    return max(LOW, min(HIGH, relative)) - LOW


def encode(events: list[tuple[int, float, float]], family: str) -> list[int]:
    """(pitch, beat strength, duration) notes -> tokens, pitches relative to the final note."""
    final = events[-1][0]
    tokens = [START[family]]
    for pitch, strength, _duration in events:
        if strength >= 0.5:
            tokens.append(STRONG)
        tokens.append(pitch_token(pitch - final))
    return tokens


def collect_sequences(cache: Path | None = None) -> dict[str, list[list[int]]]:
    """Token sequences of every corpus tune, split into train and held-out (``is_held_out``)."""
    from .corpus_stats import N_CHORALES, SOURCES, is_held_out, iter_chorale_sopranos, iter_tunes, melody_events

    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    split: dict[str, list[list[int]]] = {"train": [], "val": []}
    sources = [(family, name, iter_tunes(name)) for family, name in SOURCES]
    sources.append(("west", "bach chorales", iter_chorale_sopranos(N_CHORALES)))
    for family, name, tunes in sources:
        for index, score in enumerate(tunes):
            events = melody_events(score)
            if len(events) >= 4:
                split["val" if is_held_out(index) else "train"].append(encode(events, family))
        print(f"{name}: {len(split['train'])} train, {len(split['val'])} held-out", file=sys.stderr)
    if cache is not None:
        cache.write_text(json.dumps(split))
    return split


class TuneSampler:
    """Batches of (x, y) windows [B, T] of whole tunes for ``synesthesia.train``: a tune is picked at random,
    then a window of it; a tune shorter than the window is padded (targets -100, ignored by the loss)."""

    def __init__(self, sequences: list[list[int]], block_size: int, batch_size: int, seed: int) -> None:
        import torch

        self.sequences, self.block_size, self.batch_size = sequences, block_size, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self):
        import torch

        xs, ys = [], []
        picks = torch.randint(len(self.sequences), (self.batch_size,), generator=self.generator).tolist()
        offsets = torch.rand(self.batch_size, generator=self.generator).tolist()
        for index, offset in zip(picks, offsets):
            seq = self.sequences[index]
            start = int(offset * (len(seq) - self.block_size - 1)) if len(seq) > self.block_size + 1 else 0
            chunk = seq[start: start + self.block_size + 1]
            pad = self.block_size + 1 - len(chunk)
            xs.append(chunk[:-1] + [0] * pad)
            ys.append(chunk[1:] + [-100] * pad)
        return torch.tensor(xs), torch.tensor(ys)

    def get_state(self):
        return self.generator.get_state()

    def set_state(self, state) -> None:
        self.generator.set_state(state)


def evaluate_loss(model, sequences: list[list[int]], block: int) -> float:
    """Mean next-token cross-entropy over whole held-out tunes (windows of ``block``)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for seq in sequences:
            for start in range(0, max(1, len(seq) - 1), block):
                chunk = seq[start: start + block + 1]
                if len(chunk) < 2:
                    continue
                x, y = torch.tensor([chunk[:-1]]), torch.tensor([chunk[1:]])
                _, loss = model(x, y)
                total += loss.item() * (len(chunk) - 1)
                count += len(chunk) - 1
    model.train()
    return total / max(1, count)


# The shipped model's recipe, over synesthesia.train's defaults: cosine decay from 3e-3 to 0 with no warmup,
# AdamW betas (0.9, 0.95), weight decay 0.1, gradient clipping 1.0, float32.
RECIPE = {
    "model": MODEL_SHAPE,
    "optim": {"batch_size": 32, "max_iters": 1500, "learning_rate": 3e-3, "min_lr": 0.0, "warmup_iters": 0,
              "beta2": 0.95},
    "eval_interval": 250, "eval_iters": 20, "checkpoint_interval": 250, "log_interval": 50,
    "device": "cpu", "dtype": "float32", "seed": 0, "progress": False,
    "early_stopping": {"keep_best": False},  # the shipped weights are the last step's, as before
}


def train(out_dir: Path = MODEL_DIR, *, run_dir: Path = Path("runs/melody_gpt"), steps: int = 1500, batch: int = 32,
          learning_rate: float = 3e-3, seed: int = 0, cache: Path | None = None, resume: bool = False) -> dict:
    """Train with synesthesia.train (checkpoints, metrics.jsonl, loss.png and ``resume`` in ``run_dir``), then
    write the shipped checkpoint (``save_checkpoint``, no tokenizer: the tokens are this module's) to ``out_dir``."""
    import torch
    from omegaconf import OmegaConf

    from synesthesia.checkpoint import load_checkpoint, load_train_state, save_checkpoint
    from synesthesia.model import GPT, GPTConfig
    from synesthesia.train import TrainConfig, fit, start_run

    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), RECIPE, {
        "optim": {"max_iters": steps, "batch_size": batch, "learning_rate": learning_rate}, "seed": seed,
        "out_dir": str(run_dir), "resume": resume, "overwrite": not resume,
        "meta": {"name": "melody_gpt", "tokens": {"pitch_low": LOW, "pitch_high": HIGH, "strong": STRONG,
                                                   "start": START}}})
    data = collect_sequences(cache)
    started = time.perf_counter()
    state: dict = {}
    if resume:
        model = load_checkpoint(run_dir / "checkpoint").model.train()
        state = load_train_state(run_dir / "checkpoint")
    else:
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=VOCAB_SIZE, **MODEL_SHAPE))
    block = model.config.block_size
    samplers = {name: TuneSampler(data[split], block, batch, seed + 1) for name, split in (("train", "train"),
                                                                                        ("val", "val"))}
    run = start_run(cfg, model, None, TuneSampler(data["train"], block, batch, seed), samplers,
                    {"train_tunes": len(data["train"]), "val_tunes": len(data["val"])}, state)
    result = fit(run)
    val_loss = evaluate_loss(run.model, data["val"], block)
    meta = {
        **run.meta,
        "train_tunes": len(data["train"]),
        "val_tunes": len(data["val"]),
        "train_tokens": sum(map(len, data["train"])),
        "steps": result.step,
        "batch": batch,
        "val_loss": round(val_loss, 4),
        "val_perplexity": round(math.exp(val_loss), 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_checkpoint(out_dir, run.model, None, meta=meta)
    load_model.cache_clear()
    return meta


@lru_cache(maxsize=1)
def load_model(model_dir: str = str(MODEL_DIR)):
    """The trained GPT (eval mode) and its metadata; a CheckpointError naming the file if missing."""
    from synesthesia.checkpoint import load_checkpoint

    weights_path = Path(model_dir) / "model.safetensors"
    if not weights_path.exists():
        raise CheckpointError(f"{weights_path} is missing; train it with: python -m synesthesia_midi.melody_model "
                              "(or use pitch_model=stats)")
    checkpoint = load_checkpoint(model_dir)
    return checkpoint.model, checkpoint.meta


class GPTPitchScorer:
    """Log-probabilities of the next note's pitch (relative to the tonic) for a batch of partial melodies."""

    def __init__(self, family: str) -> None:
        self.model, self.meta = load_model()
        self.start = START[family]
        self.block = self.model.config.block_size

    def context(self, history: list[tuple[int, bool]], next_strong: bool) -> list[int]:
        tokens = [self.start]
        for relative, strong in history:
            if strong:
                tokens.append(STRONG)
            tokens.append(pitch_token(relative))
        if next_strong:
            tokens.append(STRONG)
        return tokens[-self.block:]

    def logprobs(self, histories: list[list[tuple[int, bool]]], next_strong: bool):
        """[B, PITCH_TOKENS] log-probabilities over pitch tokens only (the marker is given)."""
        import torch

        contexts = [self.context(h, next_strong) for h in histories]
        length = max(map(len, contexts))
        # Left-pad with the start token so the last position lines up; the pad only adds context noise
        # for the few beams shorter than the longest, which all have the same length here anyway.
        batch = torch.tensor([[self.start] * (length - len(c)) + c for c in contexts])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                logits, _ = self.model(batch)
        finally:
            torch.set_num_threads(threads)
        return torch.log_softmax(logits[:, -1, :PITCH_TOKENS], dim=-1)


if __name__ == "__main__":
    cache_path = Path(tempfile.gettempdir()) / "synesthesia_melody_sequences.json"
    summary = train(cache=cache_path, steps=int(os.environ.get("MELODY_GPT_STEPS", "1500")),
                    resume="--resume" in sys.argv[1:])
    print(json.dumps(summary, indent=2))
