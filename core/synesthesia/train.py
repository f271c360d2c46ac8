"""Training: ``synesthesia train data.paths=[corpus.txt] model.n_layer=4 out_dir=runs/x``.

One run writes into ``out_dir``:

    checkpoint/     the latest checkpoint, with optimizer and RNG state (see synesthesia.checkpoint)
    best/           the weights of the evaluation with the lowest validation loss so far (float32)
    metrics.jsonl   one JSON object per logged step / evaluation
    loss.png        the loss curves, redrawn at each evaluation
    export/         (with export_dtype) a weights-only copy for shipping, e.g. in float16: of best/
                    when there is one, else of the last step

Early stopping: every evaluation whose validation loss beats the best so far (by more than
``early_stopping.min_delta``) rewrites ``best/``; with ``early_stopping.patience=N``, training stops after
N evaluations in a row without such an improvement. The best step and loss are recorded in the meta of
``best/``, ``export/`` and ``checkpoint/`` (``best_step``, ``best_val_loss``), so a model that went on to
overfit ships the weights from before it did. ``early_stopping.keep_best=false`` exports the last step.

``resume=true`` continues from ``out_dir/checkpoint`` with the config saved there (only options given on the
command line change; never the model or tokenizer, and a finished run stays finished unless
``optim.max_iters`` is raised), exactly: the model, AdamW moments, the global RNG
(dropout) and the data sampler's generator are restored, so the resumed run draws the same batches and
reproduces the uninterrupted run's losses (bit for bit on CPU). Killing training loses at most
``checkpoint_interval`` steps. ``init_from=PATH`` starts a new run from a trained checkpoint (fine-tuning):
its model and tokenizer are kept; characters the tokenizer lacks are spelled with byte tokens.

Data handling (documents, packing, split, windows) is described in ``synesthesia.data``. Under
``torchrun --nproc_per_node=N -m synesthesia train ...`` training is data-parallel (see ``init_distributed``).
``dtype=auto`` is what ``synesthesia.hardware`` finds this hardware trains fastest (recorded in train_state.json).

The parts: ``setup`` (config, corpus, model) -> ``start_run`` (optimizer, dtype, DDP, resumed state; usable
for any GPT and sampler, e.g. the MIDI plugin's melody model) -> ``fit`` (the loop: ``train_step``,
``evaluate`` + ``record_evaluation``, ``write_checkpoint``) -> ``finish`` (export, result).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

from synesthesia.errors import CheckpointError, ConfigError, CorpusError
from synesthesia.fileio import atomic_path, write_atomic

CONFIG_MODULE = "synesthesia.conf"
CONFIG_NAME = "train"

# --------------------------------------------------------------------------------------------------
# The config schema (Hydra checks overrides against it: unknown keys and wrong types fail at compose)


@dataclass
class DataSection:
    paths: List[str] = field(default_factory=list)
    # Held-out files (e.g. a prepared val.jsonl); when given, val_fraction is ignored.
    val_paths: List[str] = field(default_factory=list)
    split: str = "paragraph"  # plain text into documents: file | paragraph | line
    language: Optional[str] = None  # <lang:xx> for documents without a "language" of their own
    val_fraction: float = 0.1  # the last fraction of the token stream, cut at a document start
    window_start: str = "auto"  # auto | boundary | random (see synesthesia.data)
    encoding: str = "utf-8"


@dataclass
class TokenizerSection:
    kind: str = "char"  # char | bpe
    vocab_size: int = 8000  # bpe only
    min_frequency: int = 1  # char: rarer characters are spelled as bytes; bpe: merge threshold (>= 2)


@dataclass
class ModelSection:
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.1
    bias: bool = False
    pos: str = "learned"  # learned | rope


@dataclass
class OptimSection:
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches per optimizer step
    max_iters: int = 5000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: Optional[int] = None  # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class EarlyStoppingSection:
    # Evaluations in a row without a new best validation loss before training stops; None: never early.
    patience: Optional[int] = None
    min_delta: float = 0.0  # an improvement must lower the best validation loss by more than this
    keep_best: bool = True  # keep out_dir/best (the best evaluation's weights) and export those


@dataclass
class TrainConfig:
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    early_stopping: EarlyStoppingSection = field(default_factory=EarlyStoppingSection)
    out_dir: str = "runs/train"
    resume: bool = False  # continue from out_dir/checkpoint
    init_from: Optional[str] = None  # a checkpoint folder (or registered name) to fine-tune
    overwrite: bool = False  # start afresh in an out_dir that already holds a run's checkpoint
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (what this hardware trains fastest: synesthesia.hardware) | float32 | bfloat16
    compile: bool = False  # torch.compile the model (cuda)
    seed: int = 1337
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 250
    progress: bool = True
    export_dtype: Optional[str] = None  # float32 | float16 | bfloat16: also write out_dir/export
    meta: Any = field(default_factory=dict)  # stored in the checkpoint (name, description, ...)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def compose_config(overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``conf/train.yaml`` with overrides; a bad key or value raises ConfigError."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name=CONFIG_NAME, overrides=list(overrides))
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"bad training option: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    """Hydra's message plus its cause (which says which key or value was wrong), on one line."""
    parts = [str(exc)]
    if exc.__cause__ is not None:
        parts.append(str(exc.__cause__).split("full_key:")[0])
    message = " ".join(" ".join(parts).split())
    # The schema is closed, so Hydra's hint to append a new key with "+" would not help.
    message = re.sub(r" To append to your config use \S+", "", message)
    if "is not a ListConfig" in message:
        message += "; this option is a list: write it in brackets, e.g. data.paths=[corpus.txt]"
    return message


MAX_BLOCK_SIZE = 8192


def validate(cfg) -> None:
    """The value checks that the schema's types cannot express and no later step makes, before any work.
    The model's shape is checked by GPTConfig, data.paths and data.split by load_documents, storage dtypes by
    the checkpoint's list."""
    from synesthesia.checkpoint import STORAGE_DTYPES
    from synesthesia.data import WINDOW_STARTS
    from synesthesia.hardware import check_dtype
    from synesthesia.model import GPTConfig

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    GPTConfig(vocab_size=1, **{k: getattr(cfg.model, k) for k in cfg.model})
    need(cfg.model.block_size <= MAX_BLOCK_SIZE,
         f"model.block_size must be at most {MAX_BLOCK_SIZE} (attention memory grows with its square), "
         f"got {cfg.model.block_size}")
    need(cfg.data.window_start in WINDOW_STARTS,
         f"data.window_start must be one of {WINDOW_STARTS}, got {cfg.data.window_start!r}")
    need(0.0 <= cfg.data.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    need(cfg.tokenizer.kind in ("char", "bpe"), f"tokenizer.kind must be char or bpe, got {cfg.tokenizer.kind!r}")
    need(cfg.tokenizer.vocab_size >= 300, "tokenizer.vocab_size must be at least 300 (256 bytes + specials)")
    o = cfg.optim
    for name in ("batch_size", "grad_accum", "max_iters"):
        need(getattr(o, name) >= 1, f"optim.{name} must be a positive integer")
    need(o.learning_rate > 0 and o.min_lr >= 0, "optim.learning_rate must be > 0 and optim.min_lr >= 0")
    need(o.warmup_iters >= 0, "optim.warmup_iters must be >= 0")
    need(o.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 disables clipping)")
    need(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
    for name in ("eval_interval", "eval_iters", "log_interval", "checkpoint_interval"):
        need(getattr(cfg, name) >= 1, f"{name} must be a positive integer")
    es = cfg.early_stopping
    need(es.patience is None or es.patience >= 1,
         "early_stopping.patience must be a positive number of evaluations (or null: never stop early)")
    need(es.min_delta >= 0, "early_stopping.min_delta must be >= 0")
    check_dtype(cfg.dtype, "training")
    need(cfg.export_dtype in (None, *STORAGE_DTYPES),
         f"export_dtype must be one of {', '.join(STORAGE_DTYPES)}, got {cfg.export_dtype!r}")
    need(not (cfg.resume and cfg.init_from), "resume=true and init_from are exclusive: resume continues this "
         "run's own checkpoint, init_from starts a new run from another model")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device=mps but MPS is not available; use device=cpu or device=auto")
    if not (name in ("cpu", "mps") or name == "cuda" or name.startswith("cuda:")):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return name


def resolve_autocast_dtype(name: str, device: str):
    """The autocast dtype for a concrete ``name`` (float32 | bfloat16), or None for plain float32."""
    import torch

    if name == "float32":
        return None
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError("dtype=bfloat16 but this GPU does not support bf16; use dtype=float32 or dtype=auto")
    return torch.bfloat16


def choose_training_dtype(name: str, device: str, dist: Distributed) -> dict:
    """``dtype`` (auto: what this hardware trains fastest, see synesthesia.hardware) as rank 0 decided it, so
    every process runs the same; the choice with its reason (train_state.json, the checkpoint's meta)."""
    import torch

    from synesthesia.hardware import choose_dtype

    with torch.random.fork_rng(devices=[]):  # a first-time measurement must not move the training RNG
        choice: list[dict | None] = [choose_dtype(name, device, "training").to_dict() if dist.main else None]
    if dist.world_size > 1:
        import torch.distributed

        torch.distributed.broadcast_object_list(choice, src=0)
    assert choice[0] is not None, "rank 0's dtype choice reaches every process"
    return choice[0]


def learning_rate(step: int, o) -> float:
    """Linear warmup to ``learning_rate``, then cosine decay to ``min_lr`` at ``lr_decay_iters``."""
    decay_iters = o.lr_decay_iters or o.max_iters
    if step < o.warmup_iters:
        return o.learning_rate * (step + 1) / (o.warmup_iters + 1)
    if step >= decay_iters:
        return o.min_lr
    progress = (step - o.warmup_iters) / max(1, decay_iters - o.warmup_iters)
    return o.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (o.learning_rate - o.min_lr)


# --------------------------------------------------------------------------------------------------
# Resuming: the saved run's own config, changed only where the command line asks

_FIXED_ON_RESUME = ("model", "tokenizer")  # the checkpoint's model and tokenizer are what they are


def resumed_config(cfg, overrides: list[str] | tuple[str, ...] = ()):
    """The config a ``resume=true`` run continues with: the one saved in ``out_dir/checkpoint`` (its data,
    length, schedule...), with only the keys the command line set explicitly changed. So
    ``synesthesia train out_dir=runs/mine resume=true`` needs no other option, and never lengthens a finished
    run unless ``optim.max_iters`` is given."""
    from omegaconf import OmegaConf

    from synesthesia.checkpoint import CONFIG_FILE, load_train_state, recover_interrupted_swap

    ckpt_dir = Path(cfg.out_dir) / "checkpoint"
    recover_interrupted_swap(ckpt_dir)
    if not (ckpt_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{ckpt_dir}: no checkpoint to resume; train without resume=true first")
    saved = load_train_state(ckpt_dir).get("config")
    if not isinstance(saved, dict):  # a checkpoint from before configs were saved: the command line is all
        return cfg
    # Asked for: every key the overrides name (even at its default value), and every key a preset changed.
    named = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
    baseline = _flatten(OmegaConf.to_container(compose_config(["resume=true"]), resolve=True))
    asked = {k: v for k, v in _flatten(OmegaConf.to_container(cfg, resolve=True)).items()
             if k not in ("out_dir", "resume", "overwrite")
             and (baseline.get(k) != v or any(k == n or k.startswith(n + ".") for n in named))}
    saved_flat = _flatten(saved)
    for key, value in asked.items():
        if key.split(".")[0] in _FIXED_ON_RESUME and saved_flat.get(key) != value:
            raise ConfigError(f"{key}={value} cannot change when resuming (the checkpoint was trained with "
                              f"{key}={saved_flat.get(key)}); start a new run with init_from={ckpt_dir} instead")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    except Exception as exc:  # a key this version no longer knows
        raise ConfigError(f"{ckpt_dir}: its saved config does not fit this version ({_one_line(exc)}); "
                          "start a new run with init_from instead") from None
    for key, value in asked.items():
        OmegaConf.update(merged, key, value, merge=False)
    merged.out_dir, merged.resume, merged.overwrite = cfg.out_dir, True, False
    return merged


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "meta":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --------------------------------------------------------------------------------------------------
# Data-parallel training: ``torchrun --nproc_per_node=N -m synesthesia train ...``
#
# Every process draws the same global batch of windows from the same seeded sampler and trains on its
# own 1/N of the rows (optim.batch_size is the global batch, so N processes follow the loss curve of one);
# DistributedDataParallel averages the gradients. Evaluation losses are averaged the same way. Only rank 0
# writes (checkpoints, metrics, plots, the progress bar); every rank resumes from rank 0's checkpoint.


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value):
        """The mean of a tensor over every process (itself alone without torchrun)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)  # SUM: gloo has no AVG
        return value / self.world_size


def init_distributed(device_name: str) -> tuple[Distributed, str]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK): NCCL on GPUs, gloo on CPU."""
    import os

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size == 1:
        return Distributed(), device
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Distributed(rank, world_size), device


# --------------------------------------------------------------------------------------------------
# Setup: data, model, optimizer, samplers, and the resumed state


@dataclass
class Run:
    """Everything one training run holds while it trains."""

    cfg: Any
    dist: Distributed
    device: str
    dtype: dict  # the training dtype: requested, chosen ("dtype"), why (synesthesia.hardware.DtypeChoice)
    autocast_dtype: Any  # torch.bfloat16, or None for plain float32
    model: Any  # the GPT (what checkpoints store)
    net: Any  # what trains: the model, compiled and/or wrapped in DistributedDataParallel
    tokenizer: Any
    optimizer: Any
    train_batches: Any  # WindowSampler
    eval_batches: dict  # split name -> WindowSampler
    data_state: dict  # fingerprint and split sizes (train_state.json "data")
    meta: dict
    state: dict  # the resumed train state; {} for a new run
    history: list = field(default_factory=list)
    step: int = 0
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.optim.batch_size * self.cfg.optim.grad_accum * self.train_batches.block_size

    def autocast(self):
        import torch

        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype)

    def best_meta(self) -> dict:
        best = {"best_step": self.best_step, "best_val_loss": self.best_val} if self.best_step is not None else {}
        return {**self.meta, **best}

    def patience_spent(self) -> bool:
        patience = self.cfg.early_stopping.patience
        return patience is not None and self.evals_since_best >= patience


def setup(cfg) -> Run:
    """Check ``cfg``, load the corpus, build or load the model, and start the run (``start_run``)."""
    import torch

    from synesthesia.data import WindowSampler

    validate(cfg)
    dist, device = init_distributed(cfg.device)
    if not cfg.resume and not cfg.overwrite and (Path(cfg.out_dir) / "checkpoint" / "config.json").exists():
        raise ConfigError(f"{cfg.out_dir} already holds a training run; continue it with resume=true, or start "
                          "afresh with overwrite=true (its checkpoint will be replaced), or pick another out_dir")
    documents, val_documents = _load_corpus(cfg)
    torch.manual_seed(cfg.seed + dist.rank)  # dropout differs between ranks, as it would between rows
    model, tokenizer, state = _build_model(cfg, documents, val_documents, dist)
    train_split, val_split, data_state = _pack(cfg, tokenizer, documents, val_documents)
    if state and state.get("data", {}).get("fingerprint") != data_state["fingerprint"] and dist.main:
        warnings.warn("the corpus changed since the checkpoint was written; the resumed run will differ from "
                      "an uninterrupted one", stacklevel=2)
    o, shard, block_size = cfg.optim, (dist.rank, dist.world_size), model.config.block_size
    samplers = {name: WindowSampler(split, block_size, o.batch_size, cfg.data.window_start, seed, device, shard=shard)
                for name, split, seed in (("train", train_split, cfg.seed), ("eval_train", train_split, cfg.seed + 1),
                                          ("val", val_split, cfg.seed + 1)) if split is not None}
    train_batches = samplers.pop("train")
    eval_batches = {name.replace("eval_", ""): sampler for name, sampler in samplers.items()}
    return start_run(cfg, model, tokenizer, train_batches, eval_batches, data_state, state, dist=dist, device=device)


def start_run(cfg, model, tokenizer, train_batches, eval_batches: dict, data_state: dict, state: dict | None = None,
              *, dist: Distributed | None = None, device: str | None = None) -> Run:
    """A run of any GPT over batches from any sampler (``batch()`` -> (x, y) [B, T], ``get_state``/``set_state``,
    a ``generator`` reseeded before each evaluation): the optimizer, the dtype, DDP, a resumed ``state``
    restored, the metrics file begun. ``tokenizer`` may be None (a model over its own integer tokens)."""
    import torch

    dist = dist or Distributed()
    device = device or resolve_device(cfg.device)
    if cfg.optim.batch_size % dist.world_size:
        raise ConfigError(f"optim.batch_size ({cfg.optim.batch_size}) is the global batch: it must be divisible by "
                          f"the {dist.world_size} processes")
    dtype = choose_training_dtype(cfg.dtype, device, dist)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    o = cfg.optim
    optimizer = model.configure_optimizers(o.weight_decay, o.learning_rate, (o.beta1, o.beta2), device.split(":")[0])
    net = torch.compile(model) if cfg.compile else model
    if dist.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[torch.device(device)] if device.startswith("cuda") else None)
    run = Run(cfg=cfg, dist=dist, device=device, dtype=dtype,
              autocast_dtype=resolve_autocast_dtype(dtype["dtype"], device),
              model=model, net=net, tokenizer=tokenizer, optimizer=optimizer, train_batches=train_batches,
              eval_batches=eval_batches, data_state=data_state, meta={**_run_meta(cfg), "train_dtype": dtype["dtype"]},
              state=state or {})
    if run.state:
        _restore(run, run.out_dir / "checkpoint")
    metrics_path = run.out_dir / "metrics.jsonl"
    if dist.main:
        run.history = _restart_metrics(metrics_path, run.step) if run.state else _fresh_metrics(metrics_path)
        if not run.state:
            _remove_checkpoint_dir(run.out_dir / "best")  # an earlier run's best/ (overwrite=true) is not this one's
    return run


def _load_corpus(cfg) -> tuple[list, list]:
    from synesthesia.data import load_documents

    d = cfg.data
    documents = load_documents(d.paths, d.split, d.language, d.encoding)
    val_documents = load_documents(d.val_paths, d.split, d.language, d.encoding) if d.val_paths else []
    return documents, val_documents


def _build_model(cfg, documents: list, val_documents: list, dist: Distributed):
    """(model, tokenizer, resumed train state): the run's own checkpoint, a model to fine-tune, or a new one.
    ``cfg.model`` is set to the model's real shape, so train_state.json describes the checkpoint."""
    from omegaconf import OmegaConf, open_dict

    from synesthesia.checkpoint import load_checkpoint, load_train_state
    from synesthesia.data import labels, tokenizer_texts
    from synesthesia.model import GPT, GPTConfig
    from synesthesia.tokenizer import control_tokens_for, train_tokenizer

    languages, forms = labels(documents + val_documents)  # the tokenizer learns the training text only
    state: dict = {}
    if cfg.resume or cfg.init_from:
        source = Path(cfg.out_dir) / "checkpoint" if cfg.resume else _resolve_checkpoint(cfg.init_from)
        loaded = load_checkpoint(source, device="cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        model.train()
        if cfg.resume:
            state = load_train_state(source)
        lacking = [t for t in control_tokens_for(languages, forms) if tokenizer.token_id(t) is None]
        if lacking and cfg.init_from and dist.main:
            warnings.warn(f"{cfg.init_from}: its tokenizer lacks control tokens {lacking}; they are left out",
                          stacklevel=3)
    else:
        tokenizer = train_tokenizer(cfg.tokenizer.kind, list(tokenizer_texts(documents)),
                                    control_tokens_for(languages, forms), vocab_size=cfg.tokenizer.vocab_size,
                                    min_frequency=cfg.tokenizer.min_frequency)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **OmegaConf.to_container(cfg.model)))
    real = model.config.to_dict()
    with open_dict(cfg):
        for key in OmegaConf.to_container(cfg.model):
            cfg.model[key] = real[key]
    return model, tokenizer, state


def _pack(cfg, tokenizer, documents: list, val_documents: list):
    from synesthesia.data import PackedCorpus, pack_documents, split_train_val

    corpus = pack_documents(documents, tokenizer)
    val_split: PackedCorpus | None
    if val_documents:
        train_split, val_split = corpus, pack_documents(val_documents, tokenizer)
        fingerprint = corpus.fingerprint() + val_split.fingerprint()
    else:
        train_split, val_split = split_train_val(corpus, cfg.data.val_fraction)
        fingerprint = corpus.fingerprint()
    if len(train_split) < 2:
        raise CorpusError(f"{', '.join(map(str, cfg.data.paths))}: too little text to train on; add text")
    data_state = {"fingerprint": fingerprint, "train_tokens": len(train_split),
                  "val_tokens": len(val_split) if val_split is not None else 0}
    return train_split, val_split, data_state


def _run_meta(cfg) -> dict:
    from omegaconf import OmegaConf

    meta = dict(OmegaConf.to_container(cfg.meta, resolve=True) or {}) if cfg.meta else {}
    meta.setdefault("trained_by", "synesthesia.train")
    meta.setdefault("corpus", [str(p) for p in cfg.data.paths])
    if cfg.init_from:
        meta.setdefault("init_from", str(cfg.init_from))
    return meta


def _restore(run: Run, ckpt_dir: Path) -> None:
    """Optimizer moments, step, best-so-far and every RNG of a resumed run."""
    import torch

    from synesthesia.checkpoint import load_optimizer_state

    state = run.state
    load_optimizer_state(ckpt_dir, run.optimizer)
    run.step = int(state["step"])
    run.best_val, run.best_step = state.get("best_val_loss"), state.get("best_step")
    run.evals_since_best = int(state.get("evals_since_best", 0))
    run.train_batches.set_state(state["rng"]["data"])
    if run.dist.main:  # rank 0's dropout RNG is saved; other ranks keep their own seed
        torch.set_rng_state(state["rng"]["torch"])
        if run.device.startswith("cuda") and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device=torch.device(run.device))


# --------------------------------------------------------------------------------------------------
# One optimizer step, one evaluation, one checkpoint


def train_step(run: Run, lr: float):
    """Forward and backward over ``grad_accum`` micro-batches, then one optimizer step.
    Returns this process's summed micro-batch losses (a device tensor: no sync here)."""
    import torch

    o = run.cfg.optim
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(o.grad_accum):
        x, y = run.train_batches.batch()  # [B/N, T] each: this process's rows of the global batch
        last = micro == o.grad_accum - 1
        # DDP averages gradients across processes only on the last micro-batch.
        sync = nullcontext() if last or run.dist.world_size == 1 else run.net.no_sync()
        with sync:
            with run.autocast():
                _, loss = run.net(x, y)
            loss_sum += loss.detach().float()
            (loss / o.grad_accum).backward()
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), o.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum


def evaluate(run: Run) -> dict:
    """Mean loss over ``eval_iters`` batches of each split, the same windows every time, averaged over ranks."""
    import torch

    forward = run.net.module if run.dist.world_size > 1 else run.net  # no gradient sync while evaluating
    forward.eval()
    result = {}
    for name, sampler in run.eval_batches.items():
        # Reseeded each time: every evaluation sees the same windows, and training's RNG is untouched.
        sampler.generator.manual_seed(run.cfg.seed + 1)
        losses = torch.zeros(run.cfg.eval_iters, device=run.device)  # kept on the device: one sync at the end
        with torch.no_grad():
            for i in range(run.cfg.eval_iters):
                x, y = sampler.batch()
                with run.autocast():
                    _, loss = forward(x, y)
                losses[i] = loss.float()
        result[name] = float(run.dist.mean(losses.mean()).item())
    forward.train()
    return result


def record_evaluation(run: Run, losses: dict) -> dict:
    """Track the best validation loss (rewriting best/ on rank 0) and early-stopping patience."""
    from synesthesia.checkpoint import save_checkpoint

    val_loss = losses.get("val")
    evaluation = {"step": run.step, "eval_train_loss": losses["train"]}
    if val_loss is not None:
        evaluation.update(val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50.0)))
        if run.best_val is None or val_loss < run.best_val - run.cfg.early_stopping.min_delta:
            run.best_val, run.best_step, run.evals_since_best = val_loss, run.step, 0
            evaluation["best"] = True
            if run.cfg.early_stopping.keep_best and run.dist.main:
                save_checkpoint(run.out_dir / "best", run.model, run.tokenizer, meta=run.best_meta())
        else:
            run.evals_since_best += 1
    return evaluation


def write_checkpoint(run: Run) -> None:
    """out_dir/checkpoint with everything ``resume=true`` needs (rank 0 only)."""
    import torch
    from omegaconf import OmegaConf

    from synesthesia.checkpoint import save_checkpoint

    rng = {"torch": torch.get_rng_state(), "data": run.train_batches.get_state()}
    if run.device.startswith("cuda"):
        rng["cuda"] = torch.cuda.get_rng_state(device=torch.device(run.device))
    train_state = {
        "step": run.step,
        "best_val_loss": run.best_val,
        "best_step": run.best_step,
        "evals_since_best": run.evals_since_best,
        "tokens_seen": run.step * run.tokens_per_step,
        "dtype": run.dtype,
        "processes": run.dist.world_size,
        "data": run.data_state,
        "config": OmegaConf.to_container(run.cfg, resolve=True),
        "rng": rng,
    }
    save_checkpoint(run.out_dir / "checkpoint", run.model, run.tokenizer, optimizer=run.optimizer,
                    train_state=train_state, meta=run.best_meta())


# --------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    step: int
    train_loss: float | None
    val_loss: float | None
    tokens_per_second: float
    metrics_path: Path
    plot_path: Path
    export: Path | None = None
    best_step: int | None = None  # the evaluation with the lowest validation loss
    best_val_loss: float | None = None
    best: Path | None = None  # out_dir/best, when kept
    stopped_early: bool = False
    dtype: str = "float32"  # what the forward passes ran in


def main(overrides: list[str] | tuple[str, ...] = ()) -> TrainResult:
    """Compose ``conf/train.yaml`` with command-line style overrides and train (``resume=true``: continue the
    saved run's config, see ``resumed_config``)."""
    cfg = compose_config(overrides)
    if cfg.resume:
        cfg = resumed_config(cfg, overrides)
    return train(cfg)


def train(cfg, on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train as ``cfg`` (a composed TrainConfig) says. ``on_step(step, record)`` is called after every
    optimizer step with the step's metrics (for progress displays)."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    return fit(setup(cfg), on_step)


def fit(run: Run, on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a started run to ``optim.max_iters`` (or early stopping): log, evaluate, checkpoint, export."""
    cfg = run.cfg
    o, main_rank = cfg.optim, run.dist.main
    metrics_path, plot_path = run.out_dir / "metrics.jsonl", run.out_dir / "loss.png"
    start_step, last_loss, val_loss, stopped_early = run.step, None, None, False
    if start_step >= o.max_iters and main_rank:
        print(f"{cfg.out_dir} already finished: step {start_step} of optim.max_iters={o.max_iters}; "
              f"to train longer, pass optim.max_iters=N (more than {start_step})")
    progress = _progress_bar(cfg, start_step, enabled=main_rank)
    window_tokens, window_start_time = 0, time.perf_counter()
    run_start_time = time.perf_counter()
    try:
        while run.step < o.max_iters:
            if run.patience_spent():
                stopped_early = True
                break
            lr = learning_rate(run.step, o)
            loss_sum = train_step(run, lr)
            run.step += 1
            step, record = run.step, None
            window_tokens += run.tokens_per_step
            if step % cfg.log_interval == 0 or step == o.max_iters:
                last_loss = run.dist.mean(loss_sum).item() / o.grad_accum  # one device sync per log line
                speed = window_tokens / max(time.perf_counter() - window_start_time, 1e-9)
                record = {"step": step, "loss": last_loss, "lr": lr, "tokens_per_s": round(speed, 1)}
                _log(run, record, metrics_path)
                progress.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{speed:,.0f}", refresh=False)
                window_tokens, window_start_time = 0, time.perf_counter()
            if step % cfg.eval_interval == 0 or step == o.max_iters:
                losses = evaluate(run)
                val_loss = losses.get("val")
                _log(run, record_evaluation(run, losses), metrics_path, plot_path)
                if main_rank:
                    progress.write(f"step {step}: train {losses['train']:.4f}" + (
                        f", val {val_loss:.4f} (ppl {math.exp(min(val_loss, 50.0)):.2f})"
                        if val_loss is not None else ""))
            if (step % cfg.checkpoint_interval == 0 or step == o.max_iters or run.patience_spent()) and main_rank:
                write_checkpoint(run)
            progress.update(1)
            if on_step is not None:
                on_step(step, record or {"step": step, "lr": lr})
    finally:
        progress.close()
    if run.step == start_step and start_step > 0:
        val_loss = run.state.get("best_val_loss")
    tokens_per_second = (run.step - start_step) * run.tokens_per_step / max(time.perf_counter() - run_start_time, 1e-9)
    return finish(run, last_loss, val_loss, tokens_per_second, stopped_early)


def _log(run: Run, record: dict, metrics_path: Path, plot_path: Path | None = None) -> None:
    if not run.dist.main:
        return
    run.history.append(record)
    _append_jsonl(metrics_path, record)
    if plot_path is not None:
        _plot_losses(run.history, plot_path)


def finish(run: Run, last_loss, val_loss, tokens_per_second: float, stopped_early: bool) -> TrainResult:
    """Plot, export (rank 0), wait for every process, and say where things are."""
    from synesthesia.checkpoint import load_checkpoint, save_checkpoint

    cfg, out_dir = run.cfg, run.out_dir
    ckpt_dir, best_dir = out_dir / "checkpoint", out_dir / "best"
    metrics_path, plot_path = out_dir / "metrics.jsonl", out_dir / "loss.png"
    best = best_dir if cfg.early_stopping.keep_best and (best_dir / "config.json").exists() else None
    export = out_dir / "export" if cfg.export_dtype else None
    if run.dist.main:
        if not plot_path.exists():
            _plot_losses(run.history, plot_path)
        if stopped_early and cfg.progress:
            print(f"early stopping at step {run.step}: no new best validation loss in "
                  f"{cfg.early_stopping.patience} evaluations (best {run.best_val:.4f} at step {run.best_step})")
        if export is not None:  # the best evaluation's weights when there are some, else the last step's
            model = load_checkpoint(best, device="cpu").model if best is not None else run.model
            save_checkpoint(export, model, run.tokenizer, meta=run.best_meta() if best is not None else run.meta,
                            dtype=cfg.export_dtype)
        if cfg.progress:
            print(f"checkpoint: {ckpt_dir}  metrics: {metrics_path}  loss curve: {plot_path}"
                  + (f"  export: {export}" if export else ""))
    if run.dist.world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0's files are complete before any process returns
    return TrainResult(out_dir=out_dir, checkpoint=ckpt_dir, step=run.step, train_loss=last_loss, val_loss=val_loss,
                       tokens_per_second=tokens_per_second, metrics_path=metrics_path, plot_path=plot_path,
                       export=export, best_step=run.best_step, best_val_loss=run.best_val, best=best,
                       stopped_early=stopped_early, dtype=run.dtype["dtype"])


def _remove_checkpoint_dir(path: Path) -> None:
    import shutil

    if (path / "config.json").exists():
        shutil.rmtree(path, ignore_errors=True)


def _resolve_checkpoint(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    try:  # a name registered by a plugin (e.g. "tang"); the plugin spine may not be installed
        from synesthesia.plugins import resolve_checkpoint
    except ImportError:
        return path
    return Path(resolve_checkpoint(name_or_path))


def _progress_bar(cfg, start_step: int, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.optim.max_iters, initial=start_step, disable=not (cfg.progress and enabled), desc="train",
                unit="step", dynamic_ncols=True, mininterval=0.5)


def _fresh_metrics(path: Path) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "")
    return []


def _restart_metrics(path: Path, step: int) -> list[dict]:
    """Keep the metrics up to the resumed step; rows the interrupted run wrote after it are dropped."""
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if isinstance(row, dict) and row.get("step", 0) <= step:
                kept.append(row)
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return kept


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _plot_losses(history: list[dict], path: Path) -> None:
    """Draw train (per logged step) and eval losses into a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    curves = [
        ("loss", "train (batch)", "-", 0.5),
        ("eval_train_loss", "train (eval)", "o-", 1.0),
        ("val_loss", "validation", "s-", 1.0),
    ]
    for key, label, style, alpha in curves:
        points = [(r["step"], r[key]) for r in history if key in r]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, style, label=label, alpha=alpha, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("Training loss")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
