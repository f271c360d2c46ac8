"""dtype: auto picks what this machine runs fastest, never something slower than float32."""

import json

import pytest
import torch

from synesthesia import hardware
from synesthesia.errors import ConfigError
from synesthesia.hardware import MARGIN, cache_path, choose_dtype, machine_key, resolve_dtype


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_concrete_names_pass_through_validated():
    assert resolve_dtype("float32", "cpu") == "float32"
    assert resolve_dtype("bf16", "cpu") == "bfloat16"
    assert resolve_dtype("int8", "cpu", "inference") == "int8"
    assert choose_dtype("bfloat16", "cpu", "training").reason == "set explicitly"
    with pytest.raises(ConfigError, match="training dtype must be auto or one of float32, bfloat16"):
        resolve_dtype("int8", "cpu", "training")
    with pytest.raises(ConfigError, match="inference dtype must be auto or one of"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(ConfigError, match="purpose"):
        resolve_dtype("auto", "cpu", "serving")


def test_auto_on_cpu_measures_once_and_never_picks_slower_than_float32(cache_dir):
    choice = choose_dtype("auto", "cpu", "inference")
    assert choice.dtype in ("float32", "bfloat16", "int8")
    timings = choice.timings
    assert set(timings["float32"]) == {"decode_b1", "decode_b8"}
    if choice.dtype != "float32":  # the winner beat float32 in every case measured
        assert all(timings[choice.dtype][c] <= MARGIN * timings["float32"][c] for c in timings["float32"])
    if not hardware.cpu_has_native_bf16():
        assert "bfloat16" not in timings  # never even tried where bf16 is emulated
    saved = json.loads(cache_path().read_text())
    assert saved[machine_key("inference")] == timings
    again = choose_dtype("auto", "cpu", "inference")  # from the cache: the same timings, no new run
    assert again.timings == timings and again.dtype == choice.dtype
    assert json.loads(json.dumps(again.to_dict()))["dtype"] == choice.dtype  # what the manifest records


def test_cached_timings_decide_and_slower_candidates_lose(cache_dir, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    key = machine_key("inference")
    slow_bf16 = {"float32": {"decode_b1": 1.0, "decode_b8": 1.0},
                 "int8": {"decode_b1": 0.5, "decode_b8": 1.2},  # faster at batch 1 only: loses
                 "bfloat16": {"decode_b1": 3.0, "decode_b8": 7.0}}  # emulated bf16: much slower
    cache_path().write_text(json.dumps({key: slow_bf16}))
    choice = choose_dtype("auto", "cpu")
    assert choice.dtype == "float32" and "nothing beats float32" in choice.reason
    fast_bf16 = {**slow_bf16, "bfloat16": {"decode_b1": 0.8, "decode_b8": 0.4}}
    cache_path().write_text(json.dumps({key: fast_bf16}))
    assert resolve_dtype("auto", "cpu") == "bfloat16"


def test_a_corrupt_cache_is_measured_again_and_replaced(cache_dir):
    cache_path().write_text("{not json")
    choice = choose_dtype("auto", "cpu", "training")
    assert choice.dtype in ("float32", "bfloat16")
    assert set(json.loads(cache_path().read_text())) == {machine_key("training")}


def test_auto_off_cpu_without_measuring(cache_dir):
    if not torch.cuda.is_available():
        assert resolve_dtype("auto", "cuda") == "float32"
    assert resolve_dtype("auto", "mps") == "float32"
    assert not cache_path().exists()


def test_the_transformer_generator_resolves_auto_and_says_why(cache_dir, tiny_checkpoint):
    from synesthesia.plugins import get_registry

    loaded = get_registry().generator("transformer").load(str(tiny_checkpoint), dtype="auto")
    described = loaded.describe()
    assert described["inference_dtype"] == loaded.sampler.fast.weight_format
    assert described["inference_dtype"] in ("float32", "bfloat16", "int8")
    assert described["dtype_choice"]["requested"] == "auto"
    assert described["dtype_choice"]["reason"].startswith(("measured on", "CPU without"))
    fixed = get_registry().generator("transformer").load(str(tiny_checkpoint), dtype="float32").describe()
    assert fixed["dtype_choice"] == {**fixed["dtype_choice"], "requested": "float32", "reason": "set explicitly"}


def test_compiled_code_is_kept_in_our_cache_unless_the_user_chose_a_place(cache_dir, monkeypatch, tmp_path):
    import os

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored (unset) after the test
    hardware.keep_compiled_code()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache_dir / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    hardware.keep_compiled_code()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_measuring_leaves_the_callers_random_state_and_threads_alone():
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    threads = torch.get_num_threads()
    hardware.measure("inference", ("float32",))
    assert torch.equal(torch.rand(4), expected)
    assert torch.get_num_threads() == threads


HUGE_PAGES_PROBE = """
import os
import synesthesia, torch
x = torch.ones(16 * 1024 * 1024)  # 64 MB, filled: its pages exist
huge_kb = sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages"))
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge_kb)
"""


def _probe_huge_pages(env_value: str | None) -> tuple[str, int]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != hardware.HUGE_PAGES_ENV}
    if env_value is not None:
        env[hardware.HUGE_PAGES_ENV] = env_value
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return out[0], int(out[1])


def test_import_puts_large_tensors_on_huge_pages_unless_the_user_said_no():
    mode = hardware.transparent_huge_pages()
    setting, huge_kb = _probe_huge_pages(None)
    if mode not in ("always", "madvise"):  # the kernel offers none: nothing is asked of torch
        assert setting == "None"
        return
    assert setting == "1"
    if mode == "madvise":  # only what torch madvise's gets huge pages: this tells our setting worked
        assert huge_kb >= 2048
        assert _probe_huge_pages("0") == ("0", 0)  # the user's choice stands


def test_the_kernels_huge_page_mode_is_read_from_sysfs(tmp_path, monkeypatch):
    mode_file = tmp_path / "enabled"
    mode_file.write_text("always [madvise] never\n")
    monkeypatch.setattr(hardware, "THP_MODE_PATH", mode_file)
    assert hardware.transparent_huge_pages() == "madvise"
    mode_file.write_text("[always] madvise never\n")
    assert hardware.transparent_huge_pages() == "always"
    monkeypatch.setattr(hardware, "THP_MODE_PATH", tmp_path / "missing")
    assert hardware.transparent_huge_pages() == ""
