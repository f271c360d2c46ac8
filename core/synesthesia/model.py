"""The core model: a small decoder-only transformer (GPT), written to be read.

Shapes in comments use B = batch, T = sequence length, C = n_embd, H = n_head, D = head size (C // H),
V = vocab size, L = n_layer, S = block_size (the context length).

Two ways to run it:

- ``GPT`` is the ``nn.Module`` used for training, evaluation and attention maps. ``forward`` runs the
  whole sequence through ``F.scaled_dot_product_attention``; ``attention_maps`` runs an explicit-softmax
  path that also returns the attention weights.
- ``InferenceModel`` (from ``GPT.prepare_for_inference``) is the decoding path: weights copied once,
  transposed and contiguous for ``x @ W[K, N]`` (optionally bf16 or int8), and a static pre-allocated
  ``KVCache`` so that the prompt is run once (``prefill``) and every new token costs one position
  (``step``). It runs several candidates at once (the batch dimension of the cache). On CUDA its step has
  fixed shapes and is captured as a CUDA graph (as gpt-fast does with ``torch.compile``).

The cache holds ``block_size`` positions. Running past them is the sampler's job: it slides the window
(re-prefills the most recent tokens; see ``synesthesia.sampling``). ``InferenceModel`` itself raises a
``SynesthesiaError`` rather than write past the end of the cache.
"""

from __future__ import annotations

import functools
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
    def from_dict(cls, values: dict) -> GPTConfig:
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


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       hidden: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q [B, H, T, D] over k, v [B, H, S, D], where ``hidden`` (broadcast to [T, S]; True: masked out; None:
    every key is seen) -> (y [B, H, T, D], weights [B, H, T, S]). What ``F.scaled_dot_product_attention``
    computes (within float rounding) as three plain kernels, scores, masked softmax and weighted sum, with the
    weights kept."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # [B, H, T, S]
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


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
        if need_weights:  # the same attention, with the [B, H, T, T] weights kept for pictures
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y, weights = explicit_attention(q, k, v, ~causal)  # [B, H, T, D]
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
    def from_config(cls, config: GPTConfig | dict) -> GPT:
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

    def prepare_for_inference(self, dtype: torch.dtype | str = torch.float32, **options) -> InferenceModel:
        """A decoding copy of the weights (see ``InferenceModel``; ``options``: static, graphs, compile).
        Re-run it after the weights change."""
        return InferenceModel(self, dtype, **options)


# --------------------------------------------------------------------------------------------------
# The decoding path


class KVCache:
    """Static keys and values for every layer, allocated once: ``kv[i]`` [2, B, H, S, D] for layer i
    (2 = keys, values), each layer its own tensor, so a compiled step writes one position in place (slices
    of one tensor for all layers made ``torch.compile`` copy the whole cache in every layer).

    ``length`` is how many positions are filled (all B rows, the candidates, are at the same position);
    ``pos`` is the same number as a 0-dim tensor on the device, which the static (graph-able) step reads
    and advances itself, so decoding needs no host-to-device copy per token.
    """

    def __init__(self, n_layer, batch_size, n_head, block_size, head_size, dtype, device):
        shape = (2, batch_size, n_head, block_size, head_size)
        self.kv = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.kv[0].size(1)

    @property
    def capacity(self) -> int:
        return self.kv[0].size(3)

    def reset(self) -> None:
        self.length = 0  # stale entries beyond ``length`` are never read
        self.pos.zero_()


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


PACK_MIN_ROWS = 8  # smallest batch whose matmuls run on packed weights (measured: see InferenceModel)


@functools.cache
def compile_packed_matmuls() -> bool:
    """Let ``torch.compile`` call MKL's packed matmul (``mkl::_mkl_linear``, ``InferenceModel.pack``) on
    weights that are inputs of the graph, as an opaque kernel. Inductor lowers that op only for frozen weights
    (graph constants: ``freezing``, whose packed weights its cache cannot hold) and fails on any other; this
    wraps its lowering once per process: constants still take inductor's own, other weights the op as it is.
    False where this torch's inductor has no such lowering to wrap (a packed batch then steps eagerly)."""
    try:
        from torch._inductor import lowering
        from torch._inductor.virtualized import V

        op = torch.ops.mkl._mkl_linear.default
        for_constants = lowering.lowerings[op]
    except (ImportError, AttributeError, KeyError):
        return False
    try:
        lowering.make_fallback(op, warn=False)  # replaces it with the op as it is (an extern kernel call)
        as_it_is = lowering.lowerings[op]
    except Exception:  # an inductor that refuses: leave its lowering as it was
        lowering.lowerings[op] = for_constants
        return False

    def packed_linear(x, packed_w, orig_w, *args, **kwargs):
        lower = for_constants if packed_w.get_name() in V.graph.constants else as_it_is
        return lower(x, packed_w, orig_w, *args, **kwargs)

    lowering.lowerings[op] = packed_linear
    return True


class InferenceModel:
    """Fast incremental decoding for a ``GPT``: plain tensors, ``x @ W`` with W [K, N] contiguous.

    Everything runs in ``dtype`` (float32 or bfloat16): weights, residual stream, cache. At batch 1 a
    decoding step is a few dozen tiny ops, so casts between dtypes would cost as much as the matmuls;
    logits come back float32 for sampling. ``"int8"`` stores the matmul weights as int8 with one scale
    per output channel (weight-only quantisation; activations bfloat16): on CPU its matrix-vector
    kernel is 2-3x faster than float32 at batch 1.

    Every weight of ``GPT.state_dict()`` is taken by name and the constructor raises if one is left
    unused (``used_weights`` lists them), so a new parameter in ``GPT`` cannot be silently ignored here.

    Two step paths, one per kind of device:

    - dynamic (CPU default): attention reads only the ``length`` filled positions; the residual adds ride
      on the matmuls (``addmm``), so a layer is 8 kernels. With float32 weights on a CPU whose torch has
      MKL, a cache of ``PACK_MIN_ROWS`` or more candidates (``new_cache(B)``) gets the matmul weights
      packed once for B rows (``pack``; MKL's packed GEMM, which inductor's freezing also uses): the same
      results bit for bit, and a decoding step 12-20% faster at batch 8 and 16 (at 2 and 4 it gained
      nothing). Only the last batch size's packing is kept.
    - static (``static=True``; the CUDA default): shapes never change (attention over the whole cache
      with a mask, the position a device tensor the step advances itself), so the step can be captured as
      a CUDA graph (``graphs``, default on CUDA: one replay per token instead of ~100 kernel launches) or
      compiled with ``torch.compile`` (``compile=True``; the compile time is paid once per batch size).

    ``compile=True`` on the dynamic step (the CPU default) compiles it with dynamic shapes (one compile
    serves every position; batch 1 and larger batches compile once each; inductor fuses the norms, GELU
    and adds around the matmuls):
    ~20% faster per token at batch 1 for ~20 s of compile the first time on a machine and ~3 s once
    inductor's cache holds it (``benchmarks/bench_generate.py --compile``),
    so it pays only in a long-lived process (a server, an installation). A batch whose weights are packed
    compiles around the packed matmuls (``compile_packed_matmuls``): at batch 8 20-30% less per step than the
    eager packed one, for a compile of ~35 s (~12 s from inductor's cache); the compiled step on plain matmuls
    was slower than the eager packed one.
    """

    def __init__(self, model: GPT, dtype: torch.dtype | str = torch.float32, *, static: bool | None = None,
                 graphs: bool | None = None, compile: bool = False, pack: bool | None = None):
        self.config = config = model.config
        self.weight_format = _weight_format(dtype)
        self.dtype = torch.float32 if self.weight_format == "float32" else torch.bfloat16
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.device = model.transformer.wte.weight.device
        on_cuda = self.device.type == "cuda"
        self.graphs = on_cuda if graphs is None else bool(graphs)
        if self.graphs and not on_cuda:
            raise ConfigError("CUDA graphs need a CUDA device; use graphs=False on CPU")
        self.static = bool(on_cuda or self.graphs) if static is None else bool(static)
        if self.graphs and not self.static:
            raise ConfigError("CUDA graphs need the static step (static=True)")
        self.compile = bool(compile)
        # A new position's attention in float32 through explicit_attention instead of SDPA, on CUDA and in a
        # compiled step. On CUDA, SDPA's float32 kernel (memory-efficient, tiles of 64 queries) spent 58 us a
        # layer on an H200 at batch 1, 62% of the step; with explicit_attention a graphed step fed its own argmax
        # took 0.31 ms instead of 0.59 (two H200 runs: results/generate_cuda_*). Compiled on the CPU, inductor
        # fuses the scale and softmax between two small matmuls where SDPA is one opaque call: ~6% less per
        # step at batch 1, ~10% at batch 8 on packed weights (the same greedy tokens). Eager CPU steps, a packed
        # batch's too, keep SDPA: there explicit_attention took 3-5% more at batch 1 and 8.
        self.plain_attention = self.dtype == torch.float32 and (on_cuda or self.compile)
        can_pack = (self.weight_format == "float32" and self.device.type == "cpu" and not self.static
                    and torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear"))
        if pack and not can_pack:
            raise ConfigError("pack=True needs float32 weights, the dynamic step and a CPU build of torch with MKL")
        self.pack = can_pack if pack is None else bool(pack)
        # Whether a compiled step may run on packed weights (else a packed batch steps eagerly)
        self.compile_packed = self.compile and self.pack and compile_packed_matmuls()
        # id(weight [K, N]) -> (MKL-packed weight for _packed_rows, the weight as [N, K]: a view, made once)
        self._packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._packed_rows = 0

        state = {name: t.detach() for name, t in model.state_dict().items()}
        used: set[str] = set()

        def take(name: str) -> torch.Tensor | None:
            if name not in state:
                return None
            used.add(name)
            return state[name]

        def w(prefix: str):
            weight = take(prefix + ".weight").float()  # [N, K]
            if self.weight_format == "int8":  # symmetric, per output channel: W ~ q [N, K] * s [N]
                scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
                quantised = (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
                return quantised.contiguous(), scales.to(self.dtype)
            return weight.t().contiguous().to(self.dtype)  # [K, N] for x @ W

        def b(prefix: str) -> torch.Tensor | None:
            bias = take(prefix + ".bias")
            return None if bias is None else bias.clone().to(self.dtype)

        def ln(prefix: str):
            return take(prefix + ".weight").clone().to(self.dtype), b(prefix)

        self.wte = take("transformer.wte.weight").clone().to(self.dtype)  # [V, C] token lookup
        wpe = take("transformer.wpe.weight")
        self.wpe = None if wpe is None else wpe.clone().to(self.dtype)  # [S, C]
        if config.pos == "rope":
            # float32 tables: rotating in bf16 loses the angle's precision (see _rope)
            self.rope_cos, self.rope_sin = (x.to(self.device) for x in
                                            rope_tables(self.head_size, config.block_size))
        self.layers = []
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            self.layers.append(dict(
                ln_1=ln(p + "ln_1"), ln_2=ln(p + "ln_2"),
                attn_w=w(p + "attn.c_attn"), attn_b=b(p + "attn.c_attn"),  # [C, 3C], [3C]
                proj_w=w(p + "attn.c_proj"), proj_b=b(p + "attn.c_proj"),  # [C, C], [C]
                fc_w=w(p + "mlp.c_fc"), fc_b=b(p + "mlp.c_fc"),  # [C, 4C], [4C]
                fc_proj_w=w(p + "mlp.c_proj"), fc_proj_b=b(p + "mlp.c_proj"),  # [4C, C], [C]
            ))
        self.ln_f = ln("transformer.ln_f")
        self.head_w = w("lm_head")  # [C, V] (tied: the same tensor as wte in GPT)
        unused = sorted(set(state) - used)
        if unused:
            raise SynesthesiaError(f"InferenceModel does not use the weights {unused}: the decoding path is out "
                                   "of step with GPT; update InferenceModel")
        self.used_weights = frozenset(used)
        self._static_fn = self._static_step
        self._decode_fn = self._decode
        if self.compile:
            from synesthesia.hardware import keep_compiled_code

            keep_compiled_code()
        if self.compile and self.static:
            self._static_fn = torch.compile(self._static_step, dynamic=False, fullgraph=True)
        elif self.compile:  # a C++ wrapper around the kernels: ~6% less per step than inductor's Python one
            self._decode_fn = torch.compile(self._decode, dynamic=True, options={"cpp_wrapper": True})
        self._graphed: dict[int, _GraphedStep] = {}  # batch size -> captured step (its cache is reused)

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty cache for ``batch_size`` candidates. With CUDA graphs the cache of a batch size is
        captured once and handed out again (one decoding at a time per InferenceModel)."""
        if self.graphs:
            graphed = self._graphed.get(batch_size)
            if graphed is None:
                graphed = self._graphed[batch_size] = _GraphedStep(self, self._make_cache(batch_size))
            graphed.cache.reset()
            return graphed.cache
        if self.pack and batch_size >= PACK_MIN_ROWS and batch_size != self._packed_rows:
            self._pack_weights(batch_size)
        return self._make_cache(batch_size)

    def _pack_weights(self, rows: int) -> None:
        """Pack every matmul weight for ``rows`` rows of activations (MKL sgemm_pack; ~40 ms for 14M
        parameters). A step of another batch size takes the plain matmul."""
        weights = [layer[name] for layer in self.layers for name in ("attn_w", "proj_w", "fc_w", "fc_proj_w")]
        self._packed = {id(w): (torch.ops.mkl._mkl_reorder_linear_weight(w.t(), rows), w.t())
                        for w in weights + [self.head_w]}
        self._packed_rows = rows
        if self.compile_packed:  # fixed sizes: with dynamic=True their sizes became symbols numbered anew in
            for packed, _ in self._packed.values():  # each process, and inductor's cache never hit (28 s, not 9)
                torch._dynamo.mark_static(packed)

    def _make_cache(self, batch_size: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, c.block_size, self.head_size, self.dtype, self.device)

    def _linear(self, x, weight, bias, residual=None):
        """x [M, K] @ W [K, N] (+ b [N]) (+ residual [M, N]) -> [M, N]; int8 weights are (q [N, K], scales [N])."""
        if x.size(0) == self._packed_rows:  # the batch the weights were packed for (MKL, float32)
            packed, weight_t = self._packed[id(weight)]
            if residual is None:
                return torch.ops.mkl._mkl_linear(x, packed, weight_t, bias, self._packed_rows)
            if bias is not None:  # (residual + b) + x @ W: the very sums of the addmm below
                residual = residual + bias
            return residual + torch.ops.mkl._mkl_linear(x, packed, weight_t, None, self._packed_rows)
        if isinstance(weight, tuple):
            y = torch._weight_int8pack_mm(x.contiguous(), *weight)
            if bias is not None:
                y = y + bias
            return y if residual is None else residual + y
        if residual is None:
            return x @ weight if bias is None else torch.addmm(bias, x, weight)
        if weight.dtype != torch.float32:  # a bf16 addmm into the residual rounds worse than a separate add
            return residual + (x @ weight if bias is None else torch.addmm(bias, x, weight))
        if bias is not None:
            residual = residual + bias
        return torch.addmm(residual, x, weight)  # residual + x @ W in one kernel

    @staticmethod
    def _rope(x, cos, sin):
        """apply_rope in float32 whatever x's dtype (in bf16 the rotation's own error doubles the logits')."""
        return x if cos is None else apply_rope(x.float(), cos, sin).to(x.dtype)

    @staticmethod
    def _layer_norm(x, params):
        weight, bias = params
        return F.layer_norm(x, (x.size(-1),), weight, bias)

    def _mlp(self, x: torch.Tensor, layer: dict) -> torch.Tensor:
        """x [M, C] -> x + mlp(ln_2(x)) [M, C]."""
        h = self._linear(self._layer_norm(x, layer["ln_2"]), layer["fc_w"], layer["fc_b"])  # [M, 4C]
        return self._linear(F.gelu(h), layer["fc_proj_w"], layer["fc_proj_b"], residual=x)

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
        x = x.reshape(Bx * T, C)
        for i, layer in enumerate(self.layers):
            qkv = self._linear(self._layer_norm(x, layer["ln_1"]), layer["attn_w"], layer["attn_b"])  # [Bx*T, 3C]
            qkv = qkv.view(Bx, T, 3, H, D)
            q = qkv[:, :, 0].transpose(1, 2)  # [Bx, H, T, D]
            kv = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)  # [2, Bx, H, T, D]
            layer_cache = cache.kv[i]  # [2, B, H, S, D]
            if rope is not None:
                q = self._rope(q, *rope)
                layer_cache[0, :, :, start:end] = self._rope(kv[0], *rope)
                layer_cache[1, :, :, start:end] = kv[1]
            else:
                layer_cache[:, :, :, start:end] = kv  # one copy; broadcasts a batch-1 prompt over all candidates
            keys, values = layer_cache[:, :Bx, :, :end]  # each [Bx, H, end, D]
            # One new position attends to every cached one; a prompt (start == 0) needs the causal mask.
            if T == 1 and self.plain_attention and not self._eager_packed(Bx):  # (SDPA is faster when eager)
                y, _ = explicit_attention(q, keys, values, None)  # [Bx, H, 1, D]
            else:
                y = F.scaled_dot_product_attention(q, keys, values, is_causal=T > 1)
            y = y.transpose(1, 2).reshape(Bx * T, C)  # [Bx*T, C]
            x = self._linear(y, layer["proj_w"], layer["proj_b"], residual=x)
            x = self._mlp(x, layer)
        return self._layer_norm(x, self.ln_f).view(Bx, T, C)

    def _static_step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new token per candidate, tokens [B], at position ``cache.pos`` (a device tensor it then
        advances) -> logits [B, V] float32. Fixed shapes, no host syncs: CUDA graphs and compile take it."""
        B = tokens.size(0)
        C, H, D = self.config.n_embd, self.n_head, self.head_size
        pos = cache.pos.view(1)  # [1]
        x = self.wte[tokens]  # [B, C]
        if self.wpe is not None:
            x = x + self.wpe.index_select(0, pos)
        visible = (torch.arange(cache.capacity, device=tokens.device) <= pos).view(1, -1)  # [1, S]: filled positions
        hidden = ~visible if self.plain_attention else None
        for i, layer in enumerate(self.layers):
            qkv = self._linear(self._layer_norm(x, layer["ln_1"]), layer["attn_w"], layer["attn_b"])  # [B, 3C]
            qkv = qkv.view(B, 3, H, 1, D)
            q, kv = qkv[:, 0], qkv[:, 1:].transpose(0, 1)  # [B, H, 1, D], [2, B, H, 1, D]
            if self.config.pos == "rope":
                cos, sin = self.rope_cos.index_select(0, pos), self.rope_sin.index_select(0, pos)
                q = self._rope(q, cos, sin)
                kv = torch.stack([self._rope(kv[0], cos, sin), kv[1]])
            layer_cache = cache.kv[i]  # [2, B, H, S, D]
            layer_cache.index_copy_(3, pos, kv)  # in place, the whole layer's tensor (no view): compile-friendly
            if self.plain_attention:
                y, _ = explicit_attention(q, layer_cache[0], layer_cache[1], hidden)  # [B, H, 1, D]
            else:
                y = F.scaled_dot_product_attention(q, layer_cache[0], layer_cache[1], attn_mask=visible)
            x = self._linear(y.reshape(B, C), layer["proj_w"], layer["proj_b"], residual=x)
            x = self._mlp(x, layer)
        cache.pos.add_(1)
        return self._logits(self._layer_norm(x, self.ln_f))

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
        cache.pos.fill_(T)
        logits = self._logits(h[:, -1, :])  # [Bx, V]
        return logits.expand(cache.batch_size, -1).clone() if Bx == 1 else logits

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append one token per candidate (tokens [B]) at position cache.length; return logits [B, V].

        With CUDA graphs the logits are a buffer the next step overwrites: use them before stepping again."""
        self._check_room(cache, 1)
        pos = cache.length
        cache.length = pos + 1
        if self.graphs:
            return self._graphed[cache.batch_size].replay(tokens, cache)
        if self.static:
            return self._static_fn(tokens, cache)
        if self._eager_packed(cache.batch_size):
            return self._decode(tokens, cache, pos)
        return self._decode_fn(tokens, cache, pos)

    def _eager_packed(self, rows: int) -> bool:
        """Whether a step of ``rows`` candidates runs eagerly on packed weights: always when the model is not
        compiled, and in a compiled one where inductor cannot take them (``compile_packed`` off: eager packed
        matmuls beat compiled plain ones)."""
        return rows == self._packed_rows and not self.compile_packed

    def _decode(self, tokens: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
        """The dynamic step: tokens [B] at position ``pos`` -> logits [B, V] float32."""
        x = self.wte[tokens].unsqueeze(1)  # [B, 1, C]
        if self.wpe is not None:
            x = x + self.wpe[pos]
        h = self._forward(x, cache, pos)  # [B, 1, C]
        cache.pos.add_(1)
        return self._logits(h[:, 0, :])


class _GraphedStep:
    """``InferenceModel._static_step`` captured as a CUDA graph for one cache (fixed addresses): a step is a
    copy of the new tokens into the graph's input and one replay (gpt-fast's "reduce-overhead" by hand)."""

    def __init__(self, fast: InferenceModel, cache: KVCache):
        self.cache = cache
        self.tokens = torch.zeros(cache.batch_size, dtype=torch.long, device=fast.device)
        stream = torch.cuda.Stream(device=fast.device)
        stream.wait_stream(torch.cuda.current_stream(fast.device))
        with torch.no_grad(), torch.cuda.stream(stream):  # warm up off the default stream (cuBLAS handles, compile)
            for _ in range(3):
                fast._static_fn(self.tokens, cache)
        torch.cuda.current_stream(fast.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.logits = fast._static_fn(self.tokens, cache)  # [B, V], rewritten by every replay
        cache.reset()  # the warm-up wrote stale entries, which the mask hides; positions start again at 0

    def replay(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        if cache is not self.cache:
            raise SynesthesiaError("this cache was not made by new_cache of this InferenceModel")
        self.tokens.copy_(tokens, non_blocking=True)
        self.graph.replay()
        return self.logits
