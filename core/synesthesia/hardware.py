"""What this machine runs fast: the dtype behind ``dtype: auto``, chosen by the hardware, not by habit.

bfloat16 is the fast path on a CPU with native bf16 (AVX512-BF16, AMX) and 3-7x *slower* than float32 on
one without (it is emulated); int8 weight-only decoding is fast on most CPUs at batch 1. So ``auto``:

- on CUDA: bfloat16 where ``torch.cuda.is_bf16_supported()``, else float32;
- on CPU: candidates are float32, int8 (inference only, where ``torch._weight_int8pack_mm`` exists) and
  bfloat16 (only where the CPU has native bf16 flags); a one-off micro-benchmark times each on the real
  code (``InferenceModel`` decode steps at batch 1 and 8, or a training step) and a candidate wins only
  if it beats float32 by ``MARGIN`` in every case measured. float32 otherwise: ``auto`` never picks a
  dtype slower than float32;
- elsewhere (mps): float32.

The micro-benchmark's result is cached per machine in ``~/.cache/synesthesia/dtype.json`` (``$XDG_CACHE_HOME``
honoured; ``SYNESTHESIA_CACHE_DIR`` overrides), keyed by CPU model, CPU flags, torch version and purpose;
it is written atomically and a corrupt or foreign cache file is ignored (measured again).

``resolve_dtype(name, device, purpose)`` returns a concrete name; ``choose_dtype`` returns a
``DtypeChoice`` whose ``to_dict()`` is what a manifest records (what was asked, what was chosen, why).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synesthesia.errors import ConfigError

PURPOSES = ("inference", "training")
DTYPES = {"inference": ("float32", "bfloat16", "int8"), "training": ("float32", "bfloat16")}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "torch.float32": "float32", "torch.bfloat16": "bfloat16"}
# A candidate must be this much faster than float32 (time ratio) in every measured case to be chosen.
MARGIN = 0.9
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CACHE_VERSION = 1


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype ``auto`` (or a concrete name) resolved to on one device, and why."""

    requested: str
    dtype: str
    device: str
    purpose: str
    reason: str
    # Seconds per case for each candidate, when a micro-benchmark decided (else empty).
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` line of /proc/cpuinfo); empty where that is not readable."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags, or torch's own capability check says AMX/AVX512-BF16."""
    if any(flag in cpu_flags() for flag in BF16_FLAGS):
        return True
    try:
        import torch

        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # an old torch without the call
        return False
    return "AMX" in capability or "BF16" in capability


def machine_key(purpose: str) -> str:
    """What a cached measurement is valid for: CPU model and flags, torch version, purpose."""
    import torch

    flags = ",".join(sorted(cpu_flags()))
    digest = hashlib.sha256(f"{cpu_model()}|{flags}|{platform.machine()}".encode()).hexdigest()[:16]
    return f"v{CACHE_VERSION}|{purpose}|torch {torch.__version__}|{digest}"


def cache_dir() -> Path:
    """Synesthesia's per-machine cache: $SYNESTHESIA_CACHE_DIR, else $XDG_CACHE_HOME/synesthesia, else
    ~/.cache/synesthesia."""
    base = os.environ.get("SYNESTHESIA_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "synesthesia"


def cache_path() -> Path:
    return cache_dir() / "dtype.json"


def keep_compiled_code() -> None:
    """Point torch.compile's on-disk cache (inductor's) at ``cache_dir()/inductor`` unless the user chose
    one (TORCHINDUCTOR_CACHE_DIR): compiled kernels then outlive /tmp, and a later process compiles the same
    step in about half the time (measured: 6 s instead of 12.6 s for the tang model's step)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))


HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # torch's switch; read once, at its first CPU allocation
THP_MODE_PATH = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def transparent_huge_pages() -> str:
    """The kernel's transparent huge page mode: "always", "madvise" or "never"; "" where unknown (not Linux)."""
    try:
        text = THP_MODE_PATH.read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def use_huge_pages() -> bool:
    """Ask torch to put its CPU tensors of 2 MB and more (weights, KV caches) on transparent huge pages
    (``THP_MEM_ALLOC_ENABLE=1``: 2 MB-aligned and madvise'd) where the kernel offers them, unless the user set
    that variable. Fewer TLB misses where a decoding step reads the KV cache of many candidates: a batch-8 step
    took ~11% less time on the 2-core machine, batch 1 ~6% (README, Performance). Torch reads the variable at
    its first CPU allocation, so ``import synesthesia`` calls this before any tensor exists; a process that
    allocated tensors first keeps small pages. Returns whether torch will ask for huge pages."""
    if transparent_huge_pages() not in ("always", "madvise"):
        return False
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
    return os.environ[HUGE_PAGES_ENV] == "1"


# --------------------------------------------------------------------------------------------------
# Choosing


def _concrete(name: str, purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ConfigError(f"dtype purpose must be one of {PURPOSES}, got {purpose!r}")
    allowed = DTYPES[purpose]
    chosen = ALIASES.get(str(name).lower(), str(name).lower())
    if chosen not in allowed:
        raise ConfigError(f"{purpose} dtype must be auto or one of {', '.join(allowed)}, got {name!r}")
    return chosen


def check_dtype(name: str, purpose: str = "inference", setting: str | None = None) -> str:
    """Validate a dtype setting ("auto" or a concrete name) without measuring anything; return it normalised.
    ``setting`` names the config field in the error (e.g. "model.dtype")."""
    if str(name).lower() == "auto":
        _concrete("float32", purpose)  # validates purpose
        return "auto"
    if setting is None:
        return _concrete(name, purpose)
    try:
        return _concrete(name, purpose)
    except ConfigError:
        *first, last = DTYPES[purpose]
        raise ConfigError(f"{setting} must be {', '.join(first)} or {last} (or auto: the fastest on this "
                          f"machine), not '{name}'") from None


def resolve_dtype(name: str, device: str, purpose: str = "inference") -> str:
    """``name`` ("auto" or a concrete dtype) -> the concrete dtype name for ``device`` and ``purpose``."""
    return choose_dtype(name, device, purpose).dtype


def choose_dtype(name: str, device: str, purpose: str = "inference") -> DtypeChoice:
    """Like ``resolve_dtype``, with the reason (for the manifest). Concrete names pass through validated."""
    name = check_dtype(name, purpose)
    device = str(device)
    if name != "auto":
        return DtypeChoice(name, name, device, purpose, "set explicitly")
    device_type = device.split(":")[0]
    if device_type == "cuda":
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return DtypeChoice("auto", "bfloat16", device, purpose, "CUDA device supports bfloat16")
        return DtypeChoice("auto", "float32", device, purpose, "CUDA device without bfloat16 support")
    if device_type != "cpu":
        return DtypeChoice("auto", "float32", device, purpose, f"no dtype measurements for {device_type}")
    candidates = _cpu_candidates(purpose)
    if not candidates:
        return DtypeChoice("auto", "float32", device, purpose,
                           "CPU without native bfloat16 (no avx512_bf16/amx_bf16) and no int8 kernel")
    timings = _cached_timings(purpose, ("float32", *candidates))
    return _decide(timings, device, purpose)


def _cpu_candidates(purpose: str) -> tuple[str, ...]:
    import torch

    candidates = []
    if purpose == "inference" and hasattr(torch, "_weight_int8pack_mm"):
        candidates.append("int8")
    if cpu_has_native_bf16():
        candidates.append("bfloat16")
    return tuple(candidates)


def _decide(timings: dict[str, dict[str, float]], device: str, purpose: str) -> DtypeChoice:
    """The fastest candidate that beats float32 by MARGIN in every case, else float32."""
    base = timings["float32"]
    best, best_total = "float32", sum(base.values())
    for dtype, cases in timings.items():
        if dtype == "float32" or set(cases) != set(base):
            continue
        if all(cases[c] <= MARGIN * base[c] for c in base) and sum(cases.values()) < best_total:
            best, best_total = dtype, sum(cases.values())
    ratios = ", ".join(f"{d} {sum(base.values()) / sum(c.values()):.2f}x" for d, c in timings.items() if d != "float32")
    if best == "float32":
        reason = f"measured on {cpu_model()}: nothing beats float32 in every case ({ratios} of float32's speed)"
    else:
        reason = f"measured on {cpu_model()}: {best} fastest and faster than float32 in every case ({ratios})"
    return DtypeChoice("auto", best, device, purpose, reason, timings)


def _cached_timings(purpose: str, dtypes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    key = machine_key(purpose)
    path = cache_path()
    cached = _read_cache(path)
    entry = cached.get(key)
    if isinstance(entry, dict) and all(_valid_cases(entry.get(d)) for d in dtypes):
        return {d: entry[d] for d in dtypes}
    timings = measure(purpose, dtypes)
    cached[key] = timings
    try:
        from synesthesia.fileio import write_json_atomic

        write_json_atomic(path, cached)
    except OSError:
        pass  # an unwritable cache only costs measuring again next time
    return timings


def _valid_cases(cases: Any) -> bool:
    return isinstance(cases, dict) and bool(cases) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in cases.values())


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------------
# Measuring


def measure(purpose: str, dtypes: tuple[str, ...] = ("float32",)) -> dict[str, dict[str, float]]:
    """Seconds per case for each dtype on this CPU (the best of a few repeats; one thread). The caller's
    random state and thread count are as they were afterwards (the measurement seeds its own model)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            if purpose == "inference":
                return _measure_inference(dtypes)
            return _measure_training(dtypes)
    finally:
        torch.set_num_threads(threads)


# The shipped models' order of size (6 layers, width 384).
_BENCH_SHAPE = dict(vocab_size=4000, block_size=64, n_layer=6, n_head=6, n_embd=384, bias=False)


def _measure_inference(dtypes) -> dict[str, dict[str, float]]:
    import torch

    from synesthesia.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**_BENCH_SHAPE)).eval()
    prompt = torch.randint(0, _BENCH_SHAPE["vocab_size"], (1, 8))
    steps = 16
    results: dict[str, dict[str, float]] = {d: {} for d in dtypes}
    fast = {d: model.prepare_for_inference(d) for d in dtypes}
    for batch in (1, 8):
        tokens = torch.zeros(batch, dtype=torch.long)
        best = {d: float("inf") for d in dtypes}
        for _ in range(3):  # interleaved, the best of three: other processes share the cores
            for d in dtypes:
                cache = fast[d].new_cache(batch)
                fast[d].prefill(prompt, cache)
                fast[d].step(tokens, cache)  # warm
                start = time.perf_counter()
                for _ in range(steps):
                    fast[d].step(tokens, cache)
                best[d] = min(best[d], (time.perf_counter() - start) / steps)
        for d in dtypes:
            results[d][f"decode_b{batch}"] = best[d]
    return results


def _measure_training(dtypes) -> dict[str, dict[str, float]]:
    import contextlib

    import torch

    from synesthesia.model import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(**{**_BENCH_SHAPE, "n_layer": 2})
    model = GPT(config)
    x = torch.randint(0, config.vocab_size, (8, config.block_size))
    best = {d: float("inf") for d in dtypes}

    def step(dtype: str) -> None:
        context = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
                   else contextlib.nullcontext())
        with context:
            _, loss = model(x, x)
        loss.backward()
        model.zero_grad(set_to_none=True)

    for d in dtypes:
        step(d)  # warm
    for _ in range(3):
        for d in dtypes:
            start = time.perf_counter()
            step(d)
            best[d] = min(best[d], time.perf_counter() - start)
    return {d: {"train_step": best[d]} for d in dtypes}
