"""`synesthesia export --format hf`: transformers loads the folder, its tokenizer gives our ids, its logits
are ours (float32), for the shipped models and for tiny models with biases and with rotary positions."""

from __future__ import annotations

import json

import pytest
import torch

from synesthesia.checkpoint import load_checkpoint, save_checkpoint
from synesthesia.export import export_hf
from synesthesia.model import GPT, GPTConfig
from synesthesia.plugins import resolve_checkpoint
from synesthesia.tokenizer import BPETokenizer, CharTokenizer, control_tokens_for
from tests.conftest import run_cli

TEXT_ZH = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
TEXT_EN = "Shall I compare thee to a summer's day?\nThou art more lovely 😀 and more temperate"


def hf_load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def compare(checkpoint_dir, folder, text, language=None, form=None):
    """Max abs logit difference over a conditioned prompt + text, after checking the tokenizers agree."""
    ours = load_checkpoint(checkpoint_dir)
    model, tok = hf_load(folder)
    ids = ours.tokenizer.encode(text)
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    assert tok.decode(ids, skip_special_tokens=True) == ours.tokenizer.decode(ids)
    controls = ours.tokenizer.encode_controls(language, form)
    prompt = "<bos>" + (f"<lang:{language}>" if language else "") + (f"<form:{form}>" if form else "") + "<sep>"
    assert tok(prompt, add_special_tokens=False)["input_ids"] == controls
    assert tok.eos_token_id == ours.tokenizer.eos_id and tok.bos_token_id == ours.tokenizer.bos_id
    idx = torch.tensor([(controls + ids)[: ours.config.block_size]])
    with torch.no_grad():
        a, _ = ours.model.float()(idx, torch.zeros_like(idx))
        b = model(idx).logits
    return float((a - b).abs().max()), type(model).__name__


@pytest.mark.parametrize("name,text,language,form", [
    ("tang", TEXT_ZH, "zh", "七绝"), ("shakespeare", TEXT_EN, None, None), ("verse", TEXT_EN, None, None)])
def test_shipped_models_export_with_the_same_logits(tmp_path, name, text, language, form):
    folder = export_hf(resolve_checkpoint(name), tmp_path / name, name=name)
    diff, arch = compare(resolve_checkpoint(name), folder, text, language, form)
    assert arch == "GPT2LMHeadModel" and diff < 1e-4
    info = json.loads((folder / "synesthesia.json").read_text(encoding="utf-8"))
    assert info["source"]["name"] == name and info["prompt_format"] == "synesthesia-controls"
    assert (folder / "keywords.json").is_file()


def tiny_checkpoint(path, tokenizer, **config):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32, **config))
    with torch.no_grad():  # random, non-zero biases and gains, so that a mapping error would show
        for name, p in model.named_parameters():
            if not name.endswith("wte.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    return save_checkpoint(path, model, tokenizer)


CORPUS = [TEXT_ZH, TEXT_EN, "秋月照高楼，寒雁过南山。", "the moon is bright over the sea tonight"] * 4


@pytest.mark.parametrize("config", [dict(bias=True, pos="learned"), dict(bias=True, pos="rope"),
                                    dict(bias=False, pos="rope")])
def test_tiny_models_with_biases_and_rope(tmp_path, config):
    tokenizer = CharTokenizer.train(CORPUS, control_tokens_for(["zh"], ["七绝"]))
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tokenizer, **config)
    folder = export_hf(ckpt, tmp_path / "hf")
    diff, arch = compare(ckpt, folder, TEXT_ZH + "生僻字：龘", "zh", "七绝")  # 龘 spelled in bytes
    assert diff < 1e-4
    assert arch == ("GPT2LMHeadModel" if config["pos"] == "learned" else "GPTNeoXForCausalLM")


def test_byte_level_bpe_tokenizer(tmp_path):
    tokenizer = BPETokenizer.train(CORPUS, vocab_size=300, control_tokens=control_tokens_for(["en"], ["haiku"]))
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tokenizer, pos="rope", bias=False)
    diff, _ = compare(ckpt, export_hf(ckpt, tmp_path / "hf"), TEXT_EN, "en", "haiku")
    assert diff < 1e-4


@pytest.mark.slow
def test_cli_export_and_its_one_line_errors(tmp_path):
    out = tmp_path / "tang"
    result = run_cli("export", "tang", "--format", "hf", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    again = run_cli("export", "tang", str(out))
    assert again.returncode == 1 and "not empty" in again.stderr and "Traceback" not in again.stderr
    gguf = run_cli("export", "tang", "--format", "gguf", str(tmp_path / "g"))
    assert gguf.returncode == 1 and "gguf is not supported yet" in gguf.stderr
    missing = run_cli("export", "no-such-model", str(tmp_path / "m"))
    assert missing.returncode == 1 and "no model checkpoint named" in missing.stderr
