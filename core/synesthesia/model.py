"""The core model: a small decoder-only transformer (GPT), written to be read.

Shapes in comments use B = batch, T = sequence length, C = n_embd, H = n_head, D = head size (C // H),
V = vocab size, L = n_layer, S = block_size (the context length).

Two ways to run it:

- ``GPT`` is the ``nn.Module`` used for training, evaluation and attention maps. ``forward`` runs the
  whole sequence through ``F.scaled_dot_product_attention``; ``attention_maps`` runs an explicit-softmax
  path that also returns the attention weights.
- ``InferenceModel`` (from ``GPT.prepare_for_inference``) is the decoding path: weights copied once,
  transposed and contiguous for ``x @ W[K, N]`` (optionally bf16), and a static pre-allocated ``KVCache`` so
  that the prompt is run once (``prefill``) and every new token costs one position (``step``). It runs
  several candidates at once (the batch dimension of the cache).

The cache holds ``block_size`` positions. Running past them is the sampler's job: it slides the window
(re-prefills the most recent tokens; see ``synesthesia.sampling``). ``InferenceModel`` itself raises a
``SynesthesiaError`` rather than write past the end of the cache.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from synesthesia.errors import ConfigError, SynesthesiaError

POSITIONAL_SCHEMES = ("learned", "rope")


@dataclass
class GPTConfig:
    vocab_size: int = 8000
    block_size: int = 256  # S: the longest context the model attends over
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2 style); False is a bit faster
    pos: str = "learned"  # "learned" absolute position embeddings, or "rope" rotary embeddings

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})"
            )
        if self.pos not in POSITIONAL_SCHEMES:
            raise ConfigError(f"model.pos must be one of {POSITIONAL_SCHEMES}, got {self.pos!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ConfigError("model.pos='rope' needs an even head size (n_embd // n_head)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Rotary position embeddings


def rope_tables(head_size: int, length: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each [length, D/2], for rotating (first half, second half) pairs."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # [length, D/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, D] by per-position angles; cos/sin are [T, D/2] (broadcast over the rest)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# --------------------------------------------------------------------------------------------------
# The training / evaluation module


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, need_weights: bool = False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each [B, T, C]
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # [B, H, T, D]
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos[:T], sin[:T]), apply_rope(k, cos[:T], sin[:T])
        weights = None
        if need_weights:
            # The explicit path: the same attention, with the [B, H, T, T] weights kept for pictures.
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # [B, H, T, T]
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            y = weights @ v  # [B, H, T, D]
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, need_weights: bool = False):
        attended, weights = self.attn(self.ln_1(x), rope, need_weights)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        )
        if config.pos == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output projection is the token embedding (fewer parameters, better small models).
        self.lm_head.weight = self.transformer.wte.weight
        if config.pos == "rope":
            cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size)
            # Not persistent: derived from the config, so checkpoints hold only learned weights.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance in check.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @classmethod
    def from_config(cls, config: GPTConfig | dict) -> "GPT":
        if isinstance(config, dict):
            config = GPTConfig.from_dict(config)
        return cls(config)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (the token embedding is shared
        with the output layer, so it counts as a real weight)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            total -= self.transformer.wpe.weight.numel()
        return total

    def _rope(self):
        return (self.rope_cos, self.rope_sin) if self.config.pos == "rope" else None

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise SynesthesiaError(
                f"sequence of {T} tokens is longer than the model's context (block_size="
                f"{self.config.block_size}); crop the input to its last {self.config.block_size} tokens"
            )
        x = self.transformer.wte(idx)  # [B, T, C]
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(T, device=idx.device))  # [T, C] broadcast
        return self.transformer.drop(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx [B, T] token ids -> (logits, loss).

        With ``targets`` [B, T] (``-100`` marks positions to ignore): logits [B, T, V] and the mean
        cross-entropy. Without: logits [B, 1, V] for the last position only (all that sampling needs)
        and loss None.
        """
        x = self._embed(idx)
        rope = self._rope()
        for block in self.transformer.h:
            x, _ = block(x, rope)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # [B, 1, V]
        logits = self.lm_head(x)  # [B, T, V]
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
        )
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """idx [B, T] -> one [B, H, T, T] tensor of attention weights per layer (rows sum to 1)."""
        x = self._embed(idx)
        rope = self._rope()
        maps = []
        for block in self.transformer.h:
            x, weights = block(x, rope, need_weights=True)
            maps.append(weights)
        return maps

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95),
                             device_type: str = "cpu") -> torch.optim.AdamW:
        """AdamW with two groups: every 2-D weight (matmuls and embeddings) decays; biases and
        LayerNorm gains do not (shrinking them towards zero only hurts)."""
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        extra = {}
        if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
            extra["fused"] = True
        return torch.optim.AdamW(groups, lr=learning_rate, betas=tuple(betas), **extra)

    def prepare_for_inference(self, dtype: torch.dtype | str = torch.float32) -> "InferenceModel":
        """A decoding copy of the weights (see ``InferenceModel``). Re-run it after the weights change."""
        return InferenceModel(self, dtype)


# --------------------------------------------------------------------------------------------------
# The decoding path


class KVCache:
    """Static keys and values for every layer: k, v are [L, B, H, S, D], allocated once.

    ``length`` is how many positions are filled; all B rows (candidates) are at the same position.
    """

    def __init__(self, n_layer, batch_size, n_head, block_size, head_size, dtype, device):
        shape = (n_layer, batch_size, n_head, block_size, head_size)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    @property
    def capacity(self) -> int:
        return self.k.size(3)

    def reset(self) -> None:
        self.length = 0  # stale entries beyond ``length`` are never read


INFERENCE_DTYPES = ("float32", "bfloat16", "int8")


def _weight_format(dtype) -> str:
    """float32 / bfloat16 (a torch dtype or its name) or "int8" (weight-only, bf16 activations)."""
    names = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
             "int8": "int8", "torch.float32": "float32", "torch.bfloat16": "bfloat16"}
    chosen = names.get(str(dtype).lower())
    if chosen is None:
        raise ConfigError(f"inference dtype must be one of {INFERENCE_DTYPES}, got {dtype!r}")
    if chosen == "int8" and not hasattr(torch, "_weight_int8pack_mm"):
        raise ConfigError("inference dtype int8 needs torch._weight_int8pack_mm (torch >= 2.3); use bfloat16")
    return chosen


class InferenceModel:
    """Fast incremental decoding for a ``GPT``: plain tensors, ``x @ W`` with W [K, N] contiguous.

    Everything runs in ``dtype`` (float32 or bfloat16): weights, residual stream, cache. At batch 1 a
    decoding step is a few dozen tiny ops, so casts between dtypes would cost as much as the matmuls;
    logits come back float32 for sampling. ``"int8"`` stores the matmul weights as int8 with one scale
    per output channel (weight-only quantisation; activations bfloat16): on CPU its matrix-vector
    kernel is 2-3x faster than float32 at batch 1.
    """

    def __init__(self, model: GPT, dtype: torch.dtype | str = torch.float32):
        self.config = config = model.config
        self.weight_format = _weight_format(dtype)
        self.dtype = torch.float32 if self.weight_format == "float32" else torch.bfloat16
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.device = model.transformer.wte.weight.device

        def w(linear: nn.Linear):
            weight = linear.weight.detach().float()  # [N, K]
            if self.weight_format == "int8":  # symmetric, per output channel: W ~ q [N, K] * s [N]
                scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
                quantised = (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
                return quantised.contiguous(), scales.to(self.dtype)
            return weight.t().contiguous().to(self.dtype)  # [K, N] for x @ W

        def b(module: nn.Module) -> torch.Tensor | None:
            return None if module.bias is None else module.bias.detach().clone().to(self.dtype)

        def ln(norm: nn.LayerNorm):
            bias = None if norm.bias is None else norm.bias.detach().clone().to(self.dtype)
            return norm.weight.detach().clone().to(self.dtype), bias

        t = model.transformer
        self.wte = t.wte.weight.detach().clone().to(self.dtype)  # [V, C] token lookup
        self.wpe = t.wpe.weight.detach().clone().to(self.dtype) if "wpe" in t else None  # [S, C]
        if config.pos == "rope":
            self.rope_cos, self.rope_sin = (x.to(self.device) for x in
                                            rope_tables(self.head_size, config.block_size))
        self.layers = []
        for block in t.h:
            self.layers.append(dict(
                ln_1=ln(block.ln_1), ln_2=ln(block.ln_2),
                attn_w=w(block.attn.c_attn), attn_b=b(block.attn.c_attn),  # [C, 3C], [3C]
                proj_w=w(block.attn.c_proj), proj_b=b(block.attn.c_proj),  # [C, C], [C]
                fc_w=w(block.mlp.c_fc), fc_b=b(block.mlp.c_fc),  # [C, 4C], [4C]
                fc_proj_w=w(block.mlp.c_proj), fc_proj_b=b(block.mlp.c_proj),  # [4C, C], [C]
            ))
        self.ln_f = ln(t.ln_f)
        self.head_w = w(model.lm_head)  # [C, V]

    def new_cache(self, batch_size: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, c.block_size, self.head_size,
                       self.dtype, self.device)

    @staticmethod
    def _linear(x, weight, bias):
        # x [M, K] @ W [K, N] (+ b [N]) -> [M, N]; int8 weights are (q [N, K], scales [N]).
        if isinstance(weight, tuple):
            y = torch._weight_int8pack_mm(x.contiguous(), *weight)
            return y if bias is None else y + bias
        return x @ weight if bias is None else torch.addmm(bias, x, weight)

    def _layer_norm(self, x, params):
        weight, bias = params
        return F.layer_norm(x, (x.size(-1),), weight, bias)

    def _forward(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x [B or 1, T, C] embeddings of positions start..start+T-1 -> final hidden [B', T, C].

        Either a whole prompt (start == 0) or one new position (T == 1).

        A batch-1 input with a larger cache is written into every cache row (one prompt, n candidates).
        """
        Bx, T, C = x.shape
        H, D = self.n_head, self.head_size
        end = start + T
        rope = None
        if self.config.pos == "rope":
            rope = (self.rope_cos[start:end], self.rope_sin[start:end])
        for i, layer in enumerate(self.layers):
            h = self._layer_norm(x, layer["ln_1"])
            qkv = self._linear(h.view(Bx * T, C), layer["attn_w"], layer["attn_b"])  # [Bx*T, 3C]
            q, k, v = qkv.view(Bx, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each [Bx, H, T, D]
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
            cache.k[i, :, :, start:end] = k  # broadcasts a batch-1 prompt over all candidates
            cache.v[i, :, :, start:end] = v
            keys = cache.k[i, :Bx, :, :end]  # [Bx, H, end, D]
            values = cache.v[i, :Bx, :, :end]
            # One new position attends to every cached one; a prompt (start == 0) needs the causal mask.
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=T > 1)
            y = y.transpose(1, 2).reshape(Bx * T, C)  # [Bx*T, C]
            x = x + self._linear(y, layer["proj_w"], layer["proj_b"]).view(Bx, T, C)
            h = self._layer_norm(x, layer["ln_2"]).view(Bx * T, C)
            h = F.gelu(self._linear(h, layer["fc_w"], layer["fc_b"]))  # [Bx*T, 4C]
            x = x + self._linear(h, layer["fc_proj_w"], layer["fc_proj_b"]).view(Bx, T, C)
        return self._layer_norm(x, self.ln_f)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self._linear(h, self.head_w, None).float()  # [B, V]

    def _check_room(self, cache: KVCache, new: int) -> None:
        if cache.length + new > cache.capacity:
            raise SynesthesiaError(
                f"the KV cache holds {cache.capacity} positions (block_size) and {cache.length} are used; "
                f"cannot add {new} more. Crop the context (the sampler slides the window for you)"
            )

    @torch.no_grad()
    def prefill(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run a prompt idx [B or 1, T] into an empty cache; return the last position's logits [B, V]."""
        cache.reset()
        Bx, T = idx.shape
        if T == 0:
            raise SynesthesiaError("the prompt is empty; give at least one token (e.g. <bos>)")
        if Bx not in (1, cache.batch_size):
            raise SynesthesiaError(f"prompt batch {Bx} does not match the cache batch {cache.batch_size}")
        self._check_room(cache, T)
        x = self.wte[idx]  # [Bx, T, C]
        if self.wpe is not None:
            x = x + self.wpe[:T]
        h = self._forward(x, cache, 0)  # [Bx, T, C]
        cache.length = T
        logits = self._logits(h[:, -1, :])  # [Bx, V]
        return logits.expand(cache.batch_size, -1).clone() if Bx == 1 else logits

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append one token per candidate (tokens [B]) at position cache.length; return logits [B, V]."""
        self._check_room(cache, 1)
        pos = cache.length
        x = self.wte[tokens].unsqueeze(1)  # [B, 1, C]
        if self.wpe is not None:
            x = x + self.wpe[pos]
        h = self._forward(x, cache, pos)  # [B, 1, C]
        cache.length = pos + 1
        return self._logits(h[:, 0, :])
