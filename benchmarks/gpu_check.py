"""The GPU checks of issue 13 in one call of a lent GPU machine (tests never need one).

The bench shapes' speed, correctness, then GPT-2-small's speed, printing everything to stdout (and
``$OUT/gpu_check.txt`` when ``OUT`` is set). It installs nothing: it needs torch, numpy, pluggy and
transformers, which the lent H200's image has; the package is imported from ``core/`` in this checkout. From the
repository root, as the device tool's command (timeout_s 420: it took ~250 s on a fresh machine, compiling
everything cold)::

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py

``python3 benchmarks/gpu_check.py cpu`` runs the correctness part on the CPU (without graphs), to try the
script itself where no GPU is lent.

1. ``bench_generate.py --device cuda --compile`` (bench shapes): ours against HF eager and HF's static cache
   compiled, at batch 1 and 8 (first: the issue's goals are set on these shapes).
2. Correctness on CUDA, random weights, batch 1 and 8: greedy tokens of the dynamic step, the static step
   replayed as a CUDA graph (the CUDA default), and the compiled static step in a graph, each against the
   first (how many of 64 tokens agree, and the largest logit difference of the first step); then each path's
   bare decoding loop (argmax fed back into ``step``, no sampler) timed over 256 steps, the ceiling of what
   ``generate_ids`` can reach on that step.
3. ``bench_generate.py --device cuda --shape gpt2-small``.

Every line is written to ``$OUT/gpu_check.txt`` as it comes, so a run cut short still brings back its lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def say(line: str) -> None:
    """Print a line, and append it to ``$OUT/gpu_check.txt`` at once: a run cut short still brings back what it
    measured."""
    print(line, flush=True)
    out = os.environ.get("OUT")
    if out:
        with open(Path(out, "gpu_check.txt"), "a", encoding="utf-8") as log:
            log.write(line + "\n")


def sync(device: str) -> None:
    """Wait for the GPU's queued work (timings end on it); nothing to wait for on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def correctness(device: str) -> None:
    import torch

    from synesthesia.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=8000, block_size=512, n_layer=6, n_head=8, n_embd=384)).to(device).eval()
    prompt = torch.randint(0, 8000, (1, 16), device=device)
    graph = ", CUDA graph" if device == "cuda" else ""  # static=True: graphs by default on CUDA only
    paths = {
        "dynamic (eager)": dict(static=False, graphs=False),
        f"static{graph}": dict(static=True),
        f"static compiled{graph}": dict(static=True, compile=True),
    }
    for batch in (1, 8):
        reference = first_logits = None
        made = {}
        for name, options in paths.items():
            start = time.perf_counter()
            fast = made[name] = model.prepare_for_inference(torch.float32, **options)
            cache = fast.new_cache(batch)
            logits = fast.prefill(prompt, cache)
            tokens = []
            for step in range(64):
                token = logits.argmax(-1)
                tokens.append(token)
                logits = fast.step(token, cache)
                if step == 0:
                    first = logits.clone()
            got = torch.stack(tokens, 1)
            sync(device)
            seconds = time.perf_counter() - start
            if reference is None:
                reference, first_logits = got, first
                say(f"batch {batch} {name}: reference ({seconds:.1f} s with set-up)")
                continue
            same = int((got == reference).all(0).cumprod(0).sum())
            diff = float((first - first_logits).abs().max())
            say(f"batch {batch} {name}: {same}/64 tokens as the reference before the first difference; "
                f"first-step logits differ by at most {diff:.2e} ({seconds:.1f} s with set-up and compile)")
        for name, fast in made.items():  # the bare loop, on the steps set up (captured, compiled) above
            say(f"batch {batch} {name}: bare loop {bare_loop(fast, prompt, batch, device):,.0f} "
                "tokens/s (argmax fed back into step, 256 steps)")


def bare_loop(fast, prompt, batch: int, device: str) -> float:
    """Tokens per second of ``step`` fed its own argmax, 256 steps after a prefill (best of 3), no sampler."""
    best = float("inf")
    for _ in range(3):
        cache = fast.new_cache(batch)
        sync(device)
        start = time.perf_counter()
        logits = fast.prefill(prompt, cache)
        for _ in range(256):
            logits = fast.step(logits.argmax(-1), cache)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return batch * 256 / best


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"  # "cpu": the correctness part only, to try it here
    sys.path.insert(0, str(ROOT / "core"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "core"),
                                                                     os.environ.get("PYTHONPATH")]))}
    import torch

    say(f"{torch.cuda.get_device_name(0) if device == 'cuda' else device}; torch {torch.__version__}")

    def bench(*extra: str) -> int:
        command = [sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"), "--device", "cuda", *extra]
        say("$ " + " ".join(command[1:]))
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in run.stdout:  # as it comes: a run cut short keeps its lines
            if "Warning" not in line and "warnings.warn" not in line:
                say(line.rstrip("\n"))
        return run.wait()

    status = 0 if device == "cpu" else bench("--compile")  # the goals first: a run cut short has them
    try:
        correctness(device)
    except Exception:  # report and go on to the next speed run
        for line in traceback.format_exc().splitlines():
            say(line)
        status = status or 1
    if device != "cpu":
        status = bench("--shape", "gpt2-small") or status
    return status


if __name__ == "__main__":
    sys.exit(main())
