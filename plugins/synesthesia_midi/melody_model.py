"""A small melody language model trained with our own core (``synesthesia.model.GPT``).

Tokens: one per note, its pitch in semitones above (or below) the tune's final note, from -12 to +24;
a strong-beat marker ``|`` before every note that starts on a strong beat; a start token per family
(``<zh>`` Han Chinese songs, ``<west>`` German and Irish folk songs, Bach soprano lines). So the model
learns contour and tonality together, conditioned on the metre. Trained on the same music21 tunes as
``corpus_stats`` (every tenth tune held out for validation)::

    python -m synesthesia_midi.melody_model            # parse the corpus (minutes), train, save

It writes ``data/melody_gpt/model.safetensors`` and ``config.json`` (well under a megabyte), which ship
with the package. The pitch chooser uses it with ``pitch_model="gpt"`` in place of the interval and
degree statistics; the constraints (scale, range, chord tones, cadences, tone contour) stay rules.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from synesthesia.errors import CheckpointError
from synesthesia.fileio import atomic_path

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


def _batches(sequences: list[list[int]], block: int, batch: int, rng: random.Random):
    import torch

    while True:
        xs, ys = [], []
        for _ in range(batch):
            seq = rng.choice(sequences)
            start = rng.randrange(0, max(1, len(seq) - block - 1)) if len(seq) > block + 1 else 0
            chunk = seq[start: start + block + 1]
            pad = block + 1 - len(chunk)
            xs.append(chunk[:-1] + [0] * pad)
            ys.append(chunk[1:] + [-100] * pad)
        yield torch.tensor(xs), torch.tensor(ys)


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


def train(out_dir: Path = MODEL_DIR, *, steps: int = 1500, batch: int = 32, learning_rate: float = 3e-3,
          seed: int = 0, cache: Path | None = None) -> dict:
    import torch
    from safetensors.torch import save_file
    from synesthesia.model import GPT, GPTConfig

    torch.manual_seed(seed)
    rng = random.Random(seed)
    data = collect_sequences(cache)
    config = GPTConfig(vocab_size=VOCAB_SIZE, **MODEL_SHAPE)
    model = GPT(config)
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=learning_rate)
    batches = _batches(data["train"], config.block_size, batch, rng)
    started = time.perf_counter()
    for step in range(steps):
        lr = learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))  # cosine decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(batches)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    val_loss = evaluate_loss(model, data["val"], config.block_size)
    meta = {
        "config": MODEL_SHAPE | {"vocab_size": VOCAB_SIZE},
        "tokens": {"pitch_low": LOW, "pitch_high": HIGH, "strong": STRONG, "start": START},
        "train_tunes": len(data["train"]),
        "val_tunes": len(data["val"]),
        "train_tokens": sum(map(len, data["train"])),
        "steps": steps,
        "batch": batch,
        "val_loss": round(val_loss, 4),
        "val_perplexity": round(math.exp(val_loss), 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for name, payload in (("model.safetensors", None), ("config.json", json.dumps(meta, indent=2))):
        with atomic_path(out_dir / name) as tmp:
            if payload is None:
                save_file(weights, str(tmp))
            else:
                tmp.write_text(payload, encoding="utf-8")
    return meta


@lru_cache(maxsize=1)
def load_model(model_dir: str = str(MODEL_DIR)):
    """The trained GPT (eval mode) and its metadata; a CheckpointError naming the file if missing."""
    from safetensors.torch import load_file
    from synesthesia.model import GPT, GPTConfig

    folder = Path(model_dir)
    weights_path, config_path = folder / "model.safetensors", folder / "config.json"
    if not weights_path.exists() or not config_path.exists():
        raise CheckpointError(f"{weights_path} is missing; train it with: python -m synesthesia_midi.melody_model "
                              "(or use pitch_model=stats)")
    meta = json.loads(config_path.read_text(encoding="utf-8"))
    model = GPT(GPTConfig(**meta["config"]))
    state = load_file(str(weights_path))
    if "lm_head.weight" not in state:  # tied to the token embedding, stored once
        state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state)
    model.eval()
    return model, meta


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
    summary = train(cache=cache_path, steps=int(os.environ.get("MELODY_GPT_STEPS", "1500")))
    print(json.dumps(summary, indent=2))
