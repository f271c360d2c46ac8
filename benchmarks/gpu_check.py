"""The GPU checks of issue 13 in one call of a lent GPU machine (tests never need one).

Correctness first, then speed, printing everything to stdout (and ``$OUT/gpu_check.txt`` when ``OUT`` is
set). It installs nothing: it needs torch, numpy, pluggy and transformers, which the lent H200's image has;
the package is imported from ``core/`` in this checkout. From the repository root, as the device tool's
command (timeout_s 540 leaves room for a second try within a session's 15 minutes)::

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py

``python3 benchmarks/gpu_check.py cpu`` runs the correctness part on the CPU (without graphs), to try the
script itself where no GPU is lent.

1. Correctness on CUDA, random weights, batch 1 and 8: greedy tokens of the dynamic step, the static step
   replayed as a CUDA graph (the CUDA default), and the compiled static step in a graph, each against the
   first (how many of 64 tokens agree, and the largest logit difference of the first step).
2. ``bench_generate.py --device cuda --compile`` (bench shapes) and ``--shape gpt2-small``: ours against HF
   eager and HF's static cache compiled, at batch 1 and 8.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    LOG.append(line)


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
        for name, options in paths.items():
            start = time.perf_counter()
            fast = model.prepare_for_inference(torch.float32, **options)
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
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            if reference is None:
                reference, first_logits = got, first
                say(f"batch {batch} {name}: reference ({seconds:.1f} s with set-up)")
                continue
            same = int((got == reference).all(0).cumprod(0).sum())
            diff = float((first - first_logits).abs().max())
            say(f"batch {batch} {name}: {same}/64 tokens as the reference before the first difference; "
                f"first-step logits differ by at most {diff:.2e} ({seconds:.1f} s with set-up and compile)")


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"  # "cpu": the correctness part only, to try it here
    sys.path.insert(0, str(ROOT / "core"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "core"),
                                                                     os.environ.get("PYTHONPATH")]))}
    import torch

    say(f"{torch.cuda.get_device_name(0) if device == 'cuda' else device}; torch {torch.__version__}")
    try:
        correctness(device)
    except Exception as exc:  # report and go on to the speed runs
        say(f"correctness check failed: {type(exc).__name__}: {exc}")
    status = 0
    for extra in () if device == "cpu" else (["--compile"], ["--shape", "gpt2-small"]):
        command = [sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"), "--device", "cuda", *extra]
        say("$ " + " ".join(command[1:]))
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        for line in (run.stdout + run.stderr).splitlines():
            if "Warning" not in line and "warnings.warn" not in line:
                say(line)
        status = status or run.returncode
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.txt").write_text("\n".join(LOG) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
