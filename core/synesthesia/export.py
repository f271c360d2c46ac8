"""Our models in other formats: ``synesthesia export MODEL --format hf OUT``.

``--format hf`` writes a folder that ``transformers.AutoModelForCausalLM.from_pretrained(OUT)`` and
``AutoTokenizer.from_pretrained(OUT)`` load, giving the same logits as our model (float32, to rounding):

- learned positions (``pos: learned``) map to ``GPT2LMHeadModel``: the same pre-norm blocks, exact GELU,
  tied embeddings. GPT-2 always has biases; a ``bias: false`` model gets zero biases (the same function).
- rotary positions (``pos: rope``) map to ``GPTNeoXForCausalLM`` with sequential residuals, full-width
  rotary (``partial_rotary_factor`` 1.0) and the same rotate-half pairing as ours; the fused q/k/v weight
  is regrouped per head, as GPT-NeoX lays it out.

The tokenizer is rebuilt with the ``tokenizers`` library from our vocabulary, ids unchanged: a char
tokenizer becomes a merge-free BPE with byte fallback (``<0xE4>`` pieces, as ours), a BPE tokenizer is
ours as it is. Special and control tokens (``<bos>``, ``<sep>``, ``<form:七绝>`` ...) are special added
tokens, so a prompt written as text (``<bos><lang:zh><form:七绝><sep>``) encodes as ours does.

``synesthesia.json`` beside them records where the export came from and the prompt format, so the ``hf``
generator can prompt an exported model with control tokens; ``keywords.json`` is copied when shipped.
``--format gguf`` is not supported yet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from synesthesia.errors import ConfigError, SynesthesiaError

EXPORT_INFO_FILE = "synesthesia.json"
PROMPT_FORMAT = "synesthesia-controls"  # <bos>[<lang:xx>][<form:NAME>][<kw>..</kw>]<sep>text
FORMATS = ("hf", "gguf")


def hf_tokenizer_object(tokenizer: Any):
    """A ``tokenizers.Tokenizer`` with our ids for every piece, special and control tokens as special
    added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    from synesthesia.tokenizer import SPECIAL_TOKENS, BPETokenizer, CharTokenizer

    specials = list(SPECIAL_TOKENS) + list(tokenizer.control_tokens)
    if isinstance(tokenizer, BPETokenizer):
        tok = Tokenizer.from_str(tokenizer._tok.to_str())
        tok.encode_special_tokens = False  # prompts as text may hold control tokens
    elif isinstance(tokenizer, CharTokenizer):
        vocab = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
        # No merges and no pre-tokenizer: every character is looked up on its own; characters outside the
        # vocabulary fall back to their UTF-8 bytes, spelled <0xE4> as ours.
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    else:
        raise SynesthesiaError(f"cannot export a {type(tokenizer).__name__}; only char and BPE tokenizers")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    for t in specials:
        if tok.token_to_id(t) != tokenizer.token_id(t):
            raise SynesthesiaError(f"export: token {t} would change id ({tokenizer.token_id(t)} -> "
                                   f"{tok.token_to_id(t)}); the tokenizer file is inconsistent")
    return tok


def hf_tokenizer(tokenizer: Any):
    """A ``transformers.PreTrainedTokenizerFast`` over ``hf_tokenizer_object``."""
    from transformers import PreTrainedTokenizerFast

    from synesthesia.tokenizer import BOS, EOS, KW_CLOSE, KW_OPEN, PAD, SEP, UNK

    return PreTrainedTokenizerFast(
        tokenizer_object=hf_tokenizer_object(tokenizer), bos_token=BOS, eos_token=EOS, pad_token=PAD,
        unk_token=UNK, sep_token=SEP,
        additional_special_tokens=[KW_OPEN, KW_CLOSE] + list(tokenizer.control_tokens),
        clean_up_tokenization_spaces=False, model_max_length=None,
    )


def _gpt2(model: Any, tokenizer: Any):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    config = GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=4 * c.n_embd, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, layer_norm_epsilon=1e-5, scale_attn_weights=True, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
    )
    hf = GPT2LMHeadModel(config)
    ours = model.state_dict()
    C = c.n_embd
    zeros = {"ln": torch.zeros(C), "attn": torch.zeros(3 * C), "proj": torch.zeros(C), "fc": torch.zeros(4 * C)}
    state = {"transformer.wte.weight": ours["transformer.wte.weight"],
             "transformer.wpe.weight": ours["transformer.wpe.weight"],
             "transformer.ln_f.weight": ours["transformer.ln_f.weight"],
             "transformer.ln_f.bias": ours.get("transformer.ln_f.bias", zeros["ln"])}
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        for name, size in (("ln_1", "ln"), ("ln_2", "ln")):
            state[p + name + ".weight"] = ours[p + name + ".weight"]
            state[p + name + ".bias"] = ours.get(p + name + ".bias", zeros[size])
        # Our nn.Linear weights are [out, in]; GPT-2's Conv1D holds [in, out].
        for name, size in (("attn.c_attn", "attn"), ("attn.c_proj", "proj"), ("mlp.c_fc", "fc"),
                           ("mlp.c_proj", "proj")):
            state[p + name + ".weight"] = ours[p + name + ".weight"].t().contiguous()
            state[p + name + ".bias"] = ours.get(p + name + ".bias", zeros[size])
    state["lm_head.weight"] = ours["lm_head.weight"]
    _load_exactly(hf, state)
    return hf


def _neox(model: Any, tokenizer: Any):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    c = model.config
    H, C = c.n_head, c.n_embd
    D = C // H
    config = GPTNeoXConfig(  # type: ignore[call-arg]  # rotary_* reach PretrainedConfig's **kwargs
        vocab_size=c.vocab_size, hidden_size=C, num_hidden_layers=c.n_layer, num_attention_heads=H,
        intermediate_size=4 * C, hidden_act="gelu", max_position_embeddings=c.block_size,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
        rotary_pct=1.0, rotary_emb_base=10000, layer_norm_eps=1e-5, use_parallel_residual=False,
        attention_bias=True, attention_dropout=0.0, hidden_dropout=0.0, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
    )
    hf = GPTNeoXForCausalLM(config)
    ours = model.state_dict()

    def bias(key: str, size: int):
        return ours.get(key, torch.zeros(size))

    def per_head(t):  # [3C, ...] as q(all heads), k, v -> per head (q_h, k_h, v_h), GPT-NeoX's layout
        return t.reshape(3, H, D, *t.shape[1:]).transpose(0, 1).reshape(3 * C, *t.shape[1:]).contiguous()

    state = {"gpt_neox.embed_in.weight": ours["transformer.wte.weight"],
             "gpt_neox.final_layer_norm.weight": ours["transformer.ln_f.weight"],
             "gpt_neox.final_layer_norm.bias": bias("transformer.ln_f.bias", C),
             # The output head: "lm_head" in transformers 5, "embed_out" before.
             "lm_head.weight": ours["lm_head.weight"].clone(), "embed_out.weight": ours["lm_head.weight"].clone()}
    for i in range(c.n_layer):
        p, q = f"transformer.h.{i}.", f"gpt_neox.layers.{i}."
        for theirs, mine in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            state[q + theirs + ".weight"] = ours[p + mine + ".weight"]
            state[q + theirs + ".bias"] = bias(p + mine + ".bias", C)
        state[q + "attention.query_key_value.weight"] = per_head(ours[p + "attn.c_attn.weight"])
        state[q + "attention.query_key_value.bias"] = per_head(bias(p + "attn.c_attn.bias", 3 * C))
        for theirs, mine, size in (("attention.dense", "attn.c_proj", C), ("mlp.dense_h_to_4h", "mlp.c_fc", 4 * C),
                                   ("mlp.dense_4h_to_h", "mlp.c_proj", C)):
            state[q + theirs + ".weight"] = ours[p + mine + ".weight"]
            state[q + theirs + ".bias"] = bias(p + mine + ".bias", size)
    _load_exactly(hf, state)
    return hf


def _load_exactly(hf: Any, state: dict) -> None:
    """Load every weight of the HF model from ``state``; any leftover or missing weight is a bug here."""
    expected = set(hf.state_dict())
    tied = {"lm_head.weight"} if getattr(hf.config, "tie_word_embeddings", False) else set()
    missing = sorted(expected - set(state) - tied)
    if missing:
        raise SynesthesiaError(f"export: no source for {missing[:3]}; this transformers version lays the "
                               f"model out differently")
    hf.load_state_dict({k: v.float() for k, v in state.items() if k in expected}, strict=False)
    if tied:
        hf.tie_weights()


def to_hf_model(model: Any, tokenizer: Any):
    """The HF model holding our weights: GPT-2 for learned positions, GPT-NeoX for rope."""
    if model.config.pos == "learned":
        hf = _gpt2(model, tokenizer)
    elif model.config.pos == "rope":
        hf = _neox(model, tokenizer)
    else:
        raise ConfigError(f"cannot export positional scheme {model.config.pos!r}: no HF architecture matches it")
    return hf.eval()


def export_hf(checkpoint_dir: str | Path, out: str | Path, *, name: str = "", force: bool = False) -> Path:
    """Write the HF folder for a checkpoint folder; return its path."""
    from transformers.utils import logging as hf_logging

    from synesthesia.checkpoint import load_checkpoint

    hf_logging.disable_progress_bar()  # one line of output, not a "Writing model shards" bar
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise SynesthesiaError(f"{out} exists and is not empty; pick a new folder or pass --force")
    checkpoint = load_checkpoint(checkpoint_dir)
    model = checkpoint.model.float().eval()
    tokenizer = checkpoint.tokenizer
    hf = to_hf_model(model, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out, safe_serialization=True)
    hf_tokenizer(tokenizer).save_pretrained(out)
    info = {
        "exported_by": "synesthesia export",
        "source": {"name": name or checkpoint.path.name, "path": str(checkpoint.path), "sha256": checkpoint.sha256},
        "architecture": type(hf).__name__,
        "prompt_format": PROMPT_FORMAT,
        "tokenizer_kind": tokenizer.kind,
        "languages": tokenizer.languages,
        "forms": tokenizer.forms,
        "config": checkpoint.config.to_dict(),
        "meta": {k: v for k, v in dict(checkpoint.meta or {}).items() if k in ("card", "primer")},
    }
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    for extra in ("keywords.json", "MODEL_CARD.md"):
        if (checkpoint.path / extra).is_file():
            shutil.copyfile(checkpoint.path / extra, out / extra)
    return out


@click.command("export")
@click.argument("model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="hf", show_default=True,
              help="hf: a transformers folder (AutoModelForCausalLM + AutoTokenizer); gguf: not supported yet.")
@click.option("--force", is_flag=True, help="Write into OUT even if it holds files.")
def export(model: str, out: Path, fmt: str, force: bool) -> None:
    """Export MODEL (a registered checkpoint such as tang, or a checkpoint folder) to OUT in another format.

    \b
    e.g.  synesthesia export tang --format hf exported/tang
          synesthesia run form=七绝 theme=秋月 model=hf model.name=exported/tang
    """
    if fmt == "gguf":
        raise SynesthesiaError("--format gguf is not supported yet; use --format hf (transformers folder)")
    from synesthesia.plugins import resolve_checkpoint

    path = export_hf(resolve_checkpoint(model), out, name=model, force=force)
    click.echo(f"exported {model} to {path} (transformers: AutoModelForCausalLM.from_pretrained('{path}'))")
