"""Training throughput: our GPT against a plain, minimal GPT training loop written right here.

Both models have the same dimensions (6 layers, 8 heads, width 384, vocab 8000, context 256) and train
on random tokens at batch 16 x 256 with AdamW and gradient clipping, in float32 and with bfloat16
autocast. The reference is deliberately plain: its own attention (``scaled_dot_product_attention``), an
MLP, pre-norm blocks, tied embeddings, one parameter group. Steps are interleaved; each figure is the
median of the timed steps after the warm-up ones.

A second table times our GPT on every device here, CPU and (when there is one) a single CUDA GPU, at the
same batch, in float32 and in bfloat16 autocast, so a GPU machine adds its row next to the CPU's; without a
GPU the table says so.

Run: ``.venv/bin/python benchmarks/bench_train.py`` (``--devices cpu`` to skip looking for a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from machine import cpu_model

from synesthesia.model import GPT, GPTConfig

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 8000, 256, 6, 8, 384
BATCH = 16


class PlainBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.out = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.up, self.down = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        B, T, _ = x.shape
        heads = self.qkv(self.norm1(x)).view(B, T, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(heads[0], heads[1], heads[2], is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(B, T, WIDTH))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class PlainGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, WIDTH), nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.Sequential(*[PlainBlock() for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.head.weight = self.tokens.weight

    def forward(self, idx, targets):
        x = self.tokens(idx) + self.positions(torch.arange(idx.size(1)))
        logits = self.head(self.norm(self.blocks(x)))
        return logits, F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def make_step(model, optimizer, bf16: bool, device: str = "cpu"):
    def step(x, y):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated devices for the second table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    runs = {}
    for bf16 in (False, True):
        ours = GPT(GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=LAYERS, n_head=HEADS, n_embd=WIDTH))
        runs[("synesthesia GPT", bf16)] = make_step(
            ours, ours.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu"), bf16)
        plain = PlainGPT()
        runs[("plain loop", bf16)] = make_step(plain, torch.optim.AdamW(plain.parameters(), lr=3e-4), bf16)

    x = torch.randint(0, VOCAB, (BATCH, CONTEXT))
    y = torch.randint(0, VOCAB, (BATCH, CONTEXT))
    times: dict[tuple, list[float]] = {}
    for i in range(args.warmup + args.steps):
        for key, step in runs.items():
            start = time.perf_counter()
            step(x, y)
            if i >= args.warmup:
                times.setdefault(key, []).append(time.perf_counter() - start)

    print(f"CPU: {cpu_model()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH} x {CONTEXT} tokens; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    header = f"{'implementation':<18}{'precision':>11}{'s/step':>9}{'tokens/s':>10}"
    print(header)
    print("-" * len(header))
    for (name, bf16), values in times.items():
        seconds = statistics.median(values)
        print(f"{name:<18}{'bf16 auto' if bf16 else 'fp32':>11}{seconds:>9.3f}{BATCH * CONTEXT / seconds:>10.0f}")
    device_table([d for d in args.devices.split(",") if d], args.warmup, args.steps)


def device_table(devices: list[str], warmup: int, steps: int) -> None:
    """Our GPT's training step on each device (a single GPU against this CPU), interleaved per device."""
    rows, missing = [], []
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            missing.append(device)
            continue
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_model()
        for bf16 in (False, True):
            if bf16 and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
                continue
            torch.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=LAYERS, n_head=HEADS,
                                  n_embd=WIDTH)).to(device)
            step = make_step(model, model.configure_optimizers(0.1, 3e-4, (0.9, 0.95), device.split(":")[0]), bf16,
                             device)
            x = torch.randint(0, VOCAB, (BATCH, CONTEXT), device=device)
            times = []
            for i in range(warmup + steps):
                start = time.perf_counter()
                step(x, x)  # loss.item() waits for the device
                if i >= warmup:
                    times.append(time.perf_counter() - start)
            rows.append((device, name, "bf16 auto" if bf16 else "fp32", statistics.median(times)))
    print()
    print(f"single device: our GPT, batch {BATCH} x {CONTEXT}, median of {steps} steps")
    header = f"{'device':<8}{'precision':>11}{'s/step':>9}{'tokens/s':>11}{'vs cpu fp32':>13}  model"
    print(header)
    print("-" * len(header))
    base = next((t for d, _, p, t in rows if d == "cpu" and p == "fp32"), None)
    for device, name, precision, seconds in rows:
        ratio = f"{base / seconds:.1f}x" if base else "-"
        print(f"{device:<8}{precision:>11}{seconds:>9.3f}{BATCH * CONTEXT / seconds:>11.0f}{ratio:>13}  {name}")
    for device in missing:
        print(f"{device:<8}  no GPU on this machine: run this benchmark where one is to add its row")


if __name__ == "__main__":
    main()
