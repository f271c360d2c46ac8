"""What machine a benchmark ran on (every table prints it: machines differ from session to session), and how
fast its memory is (the roofline a decoder that reads every weight once per token cannot beat)."""

from __future__ import annotations

import time

from synesthesia.hardware import (
    cpu_model,  # noqa: F401  (one source: benchmarks print what auto decides by)
    transparent_huge_pages,
    use_huge_pages,
)


def memory_bandwidth(device: str = "cpu", megabytes: float = 1024, repeats: int = 5) -> dict[str, float]:
    """GB/s of a read (``sum`` of a float32 tensor of ``megabytes``) and of a copy (bytes read + written), best
    of ``repeats``, with torch's current thread count. The tensor is filled first (untouched pages read as a
    shared zero page and would flatter the figure). 1 GiB is far larger than any cache (main memory); a
    tensor the size of a model's weights measures what re-reading those weights every token can reach."""
    import torch

    n = int(megabytes * 1024 * 1024) // 4
    source = torch.ones(n, device=device)
    target = torch.empty_like(source)
    sync = torch.cuda.synchronize if source.is_cuda else (lambda: None)

    def best(run) -> float:
        run()
        sync()
        fastest = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            sync()
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    read = n * 4 / best(source.sum) / 1e9
    copy = 2 * n * 4 / best(lambda: target.copy_(source)) / 1e9
    return {"read": read, "copy": copy}


def huge_pages_line() -> str:
    """Whether this process's large torch tensors are on transparent huge pages (``hardware.use_huge_pages``,
    which ``import synesthesia`` calls) and the kernel's mode."""
    on = use_huge_pages()  # already called by the import: this only reads the answer again
    return f"huge pages {'on' if on else 'off'} (kernel: {transparent_huge_pages() or 'unknown'})"


def device_name(device: str) -> str:
    """The CPU model, or the GPU's name for a CUDA device."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_model()
