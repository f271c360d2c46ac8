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

``resume=true`` continues from ``out_dir/checkpoint`` exactly: the model, AdamW moments, the global RNG
(dropout) and the data sampler's generator are restored, so the resumed run draws the same batches and
reproduces the uninterrupted run's losses (bit for bit on CPU). Killing training loses at most
``checkpoint_interval`` steps. ``init_from=PATH`` starts a new run from a trained checkpoint (fine-tuning):
its model and tokenizer are kept; characters the tokenizer lacks are spelled with byte tokens.

Data handling (documents, packing, split, windows) is described in ``synesthesia.data``.
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
    dtype: str = "auto"  # auto (bf16 autocast on cuda that supports it) | float32 | bfloat16
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
    """Value checks that the schema's types cannot express; raise ConfigError before any work."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(bool(cfg.data.paths), "data.paths is empty; give the corpus, e.g. data.paths=[poems.jsonl]")
    from synesthesia.data import SPLITS, WINDOW_STARTS

    need(cfg.data.split in SPLITS, f"data.split must be one of {SPLITS}, got {cfg.data.split!r}")
    need(cfg.data.window_start in WINDOW_STARTS,
         f"data.window_start must be one of {WINDOW_STARTS}, got {cfg.data.window_start!r}")
    need(0.0 <= cfg.data.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    need(cfg.tokenizer.kind in ("char", "bpe"), f"tokenizer.kind must be char or bpe, got {cfg.tokenizer.kind!r}")
    need(cfg.tokenizer.vocab_size >= 300, "tokenizer.vocab_size must be at least 300 (256 bytes + specials)")
    for name in ("block_size", "n_layer", "n_head", "n_embd"):
        need(getattr(cfg.model, name) >= 1, f"model.{name} must be a positive integer")
    need(cfg.model.block_size <= MAX_BLOCK_SIZE,
         f"model.block_size must be at most {MAX_BLOCK_SIZE} (attention memory grows with its square), "
         f"got {cfg.model.block_size}")
    need(cfg.model.n_embd % cfg.model.n_head == 0, "model.n_embd must be divisible by model.n_head")
    need(0.0 <= cfg.model.dropout < 1.0, "model.dropout must be in [0, 1)")
    need(cfg.model.pos in ("learned", "rope"), f"model.pos must be learned or rope, got {cfg.model.pos!r}")
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
    need(cfg.dtype in ("auto", "float32", "bfloat16"), f"dtype must be auto, float32 or bfloat16, got {cfg.dtype!r}")
    need(cfg.export_dtype in (None, "float32", "float16", "bfloat16"),
         f"export_dtype must be float32, float16 or bfloat16, got {cfg.export_dtype!r}")
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
    """The autocast dtype, or None for plain float32."""
    import torch

    device_type = device.split(":")[0]
    if name == "float32":
        return None
    if name == "bfloat16":
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("dtype=bfloat16 but this GPU does not support bf16; use dtype=float32")
        return torch.bfloat16
    if device_type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None  # auto on CPU: float32 (bf16 autocast is optional there: dtype=bfloat16)


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
# The run


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


def main(overrides: list[str] | tuple[str, ...] = ()) -> TrainResult:
    """Compose ``conf/train.yaml`` with command-line style overrides and train."""
    return train(compose_config(overrides))


def train(cfg, on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train as ``cfg`` (a composed TrainConfig) says. ``on_step(step, record)`` is called after every
    optimizer step with the step's metrics (for progress displays)."""
    import torch
    from omegaconf import OmegaConf

    from synesthesia.checkpoint import (
        load_checkpoint,
        load_optimizer_state,
        load_train_state,
        save_checkpoint,
    )
    from synesthesia.data import (
        WindowSampler,
        labels,
        load_documents,
        pack_documents,
        split_train_val,
        tokenizer_texts,
    )
    from synesthesia.model import GPT, GPTConfig
    from synesthesia.tokenizer import control_tokens_for, train_tokenizer

    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    validate(cfg)
    device = resolve_device(cfg.device)
    device_type = device.split(":")[0]
    autocast_dtype = resolve_autocast_dtype(cfg.dtype, device)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoint"
    best_dir = out_dir / "best"
    metrics_path = out_dir / "metrics.jsonl"
    plot_path = out_dir / "loss.png"
    o = cfg.optim
    if not cfg.resume and not cfg.overwrite and (ckpt_dir / "config.json").exists():
        raise ConfigError(f"{out_dir} already holds a training run; continue it with resume=true, "
                          "or start afresh with overwrite=true (its checkpoint will be replaced), or pick another out_dir")

    documents = load_documents(cfg.data.paths, cfg.data.split, cfg.data.language, cfg.data.encoding)
    val_documents = (load_documents(cfg.data.val_paths, cfg.data.split, cfg.data.language, cfg.data.encoding)
                     if cfg.data.val_paths else [])
    torch.manual_seed(cfg.seed)
    state: dict = {}
    if cfg.resume:
        if not (ckpt_dir / "config.json").exists() and not any(out_dir.glob(".checkpoint.old-*")):
            raise CheckpointError(f"{ckpt_dir}: no checkpoint to resume; train without resume=true first")
        loaded = load_checkpoint(ckpt_dir, device="cpu")
        state = load_train_state(ckpt_dir)
        model, tokenizer = loaded.model, loaded.tokenizer
        model.train()
    elif cfg.init_from:
        loaded = load_checkpoint(_resolve_checkpoint(cfg.init_from), device="cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        model.train()
        languages, forms = labels(documents + val_documents)
        lacking = [t for t in control_tokens_for(languages, forms) if tokenizer.token_id(t) is None]
        if lacking:
            warnings.warn(f"{cfg.init_from}: its tokenizer lacks control tokens {lacking}; they are left out",
                          stacklevel=2)
    else:
        languages, forms = labels(documents + val_documents)
        tokenizer = train_tokenizer(
            cfg.tokenizer.kind, list(tokenizer_texts(documents)), control_tokens_for(languages, forms),
            vocab_size=cfg.tokenizer.vocab_size, min_frequency=cfg.tokenizer.min_frequency,
        )
        m = cfg.model
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                              n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, bias=m.bias, pos=m.pos))
    block_size = model.config.block_size

    corpus = pack_documents(documents, tokenizer)
    if val_documents:
        train_split, val_split = corpus, pack_documents(val_documents, tokenizer)
        fingerprint = corpus.fingerprint() + val_split.fingerprint()
    else:
        train_split, val_split = split_train_val(corpus, cfg.data.val_fraction)
        fingerprint = corpus.fingerprint()
    if len(train_split) < 2:
        raise CorpusError(f"{', '.join(map(str, cfg.data.paths))}: too little text to train on; add text")
    if state and state.get("data", {}).get("fingerprint") != fingerprint:
        warnings.warn("the corpus changed since the checkpoint was written; the resumed run will differ from "
                      "an uninterrupted one", stacklevel=2)

    model.to(device)
    optimizer = model.configure_optimizers(o.weight_decay, o.learning_rate, (o.beta1, o.beta2), device_type)
    train_batches = WindowSampler(train_split, block_size, o.batch_size, cfg.data.window_start, cfg.seed, device)
    start_step, best_val, best_step, evals_since_best = 0, None, None, 0
    if state:
        load_optimizer_state(ckpt_dir, optimizer)
        start_step = int(state["step"])
        best_val = state.get("best_val_loss")
        best_step = state.get("best_step")
        evals_since_best = int(state.get("evals_since_best", 0))
        train_batches.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if device_type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device=torch.device(device))
    history = _restart_metrics(metrics_path, start_step) if state else _fresh_metrics(metrics_path)
    compiled = torch.compile(model) if cfg.compile else model

    def autocast():
        if autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device_type, dtype=autocast_dtype)

    eval_samplers = {
        name: WindowSampler(split, block_size, o.batch_size, cfg.data.window_start, cfg.seed + 1, device)
        for name, split in (("train", train_split), ("val", val_split)) if split is not None
    }

    def evaluate_losses() -> dict:
        compiled.eval()
        result = {}
        for name, sampler in eval_samplers.items():
            # Reseeded each time: every evaluation sees the same windows, and training's RNG is untouched.
            sampler.generator.manual_seed(cfg.seed + 1)
            losses = torch.zeros(cfg.eval_iters, device=device)  # kept on the device: one sync at the end
            with torch.no_grad():
                for i in range(cfg.eval_iters):
                    x, y = sampler.batch()
                    with autocast():
                        _, loss = compiled(x, y)
                    losses[i] = loss.float()
            result[name] = float(losses.mean().item())
        compiled.train()
        return result

    def write_checkpoint(step: int) -> None:
        rng = {"torch": torch.get_rng_state(), "data": train_batches.get_state()}
        if device_type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device=torch.device(device))
        train_state = {
            "step": step,
            "best_val_loss": best_val,
            "best_step": best_step,
            "evals_since_best": evals_since_best,
            "tokens_seen": step * tokens_per_step,
            "data": {"fingerprint": fingerprint, "train_tokens": len(train_split),
                     "val_tokens": len(val_split) if val_split is not None else 0},
            "config": OmegaConf.to_container(cfg, resolve=True),
            "rng": rng,
        }
        save_checkpoint(ckpt_dir, model, tokenizer, optimizer=optimizer, train_state=train_state,
                        meta=best_meta())

    def best_meta() -> dict:
        return {**meta, **({"best_step": best_step, "best_val_loss": best_val} if best_step is not None else {})}

    def patience_spent() -> bool:
        patience = cfg.early_stopping.patience
        return patience is not None and evals_since_best >= patience

    meta = dict(OmegaConf.to_container(cfg.meta, resolve=True) or {}) if cfg.meta else {}
    meta.setdefault("trained_by", "synesthesia.train")
    meta.setdefault("corpus", [str(p) for p in cfg.data.paths])
    if cfg.init_from:
        meta.setdefault("init_from", str(cfg.init_from))
    tokens_per_step = o.batch_size * o.grad_accum * train_batches.block_size
    progress = _progress_bar(cfg, start_step)
    last_loss, val_loss = None, None
    window_tokens, window_start_time = 0, time.perf_counter()
    run_tokens, run_start_time = 0, time.perf_counter()
    step = start_step
    stopped_early = False
    if not state:
        _remove_checkpoint_dir(best_dir)  # an earlier run's best/ (overwrite=true) must not be exported
    compiled.train()
    try:
        while step < o.max_iters:
            if patience_spent():
                stopped_early = True
                break
            lr = learning_rate(step, o)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for _ in range(o.grad_accum):
                x, y = train_batches.batch()
                with autocast():
                    _, loss = compiled(x, y)
                loss_sum += loss.detach().float()
                (loss / o.grad_accum).backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_tokens += tokens_per_step
            run_tokens += tokens_per_step
            record = None
            if step % cfg.log_interval == 0 or step == o.max_iters:
                last_loss = loss_sum.item() / o.grad_accum  # one device sync per log line
                elapsed = time.perf_counter() - window_start_time
                speed = window_tokens / max(elapsed, 1e-9)
                record = {"step": step, "loss": last_loss, "lr": lr, "tokens_per_s": round(speed, 1)}
                history.append(record)
                _append_jsonl(metrics_path, record)
                progress.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{speed:,.0f}", refresh=False)
                window_tokens, window_start_time = 0, time.perf_counter()
            if step % cfg.eval_interval == 0 or step == o.max_iters:
                losses = evaluate_losses()
                val_loss = losses.get("val")
                evaluation = {"step": step, "eval_train_loss": losses["train"]}
                if val_loss is not None:
                    evaluation.update(val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50.0)))
                    if best_val is None or val_loss < best_val - cfg.early_stopping.min_delta:
                        best_val, best_step, evals_since_best = val_loss, step, 0
                        evaluation["best"] = True
                        if cfg.early_stopping.keep_best:
                            save_checkpoint(best_dir, model, tokenizer, meta=best_meta())
                    else:
                        evals_since_best += 1
                history.append(evaluation)
                _append_jsonl(metrics_path, evaluation)
                _plot_losses(history, plot_path)
                progress.write(
                    f"step {step}: train {losses['train']:.4f}"
                    + (f", val {val_loss:.4f} (ppl {math.exp(min(val_loss, 50.0)):.2f})" if val_loss is not None else "")
                )
            if step % cfg.checkpoint_interval == 0 or step == o.max_iters or patience_spent():
                write_checkpoint(step)
            progress.update(1)
            if on_step is not None:
                on_step(step, record or {"step": step, "lr": lr})
    finally:
        progress.close()
    if not plot_path.exists():
        _plot_losses(history, plot_path)
    if step == start_step and start_step > 0:
        val_loss = state.get("best_val_loss")
    if stopped_early and cfg.progress:
        print(f"early stopping at step {step}: no new best validation loss in {cfg.early_stopping.patience} "
              f"evaluations (best {best_val:.4f} at step {best_step})")
    best = best_dir if cfg.early_stopping.keep_best and (best_dir / "config.json").exists() else None
    export = None
    if cfg.export_dtype:
        if best is not None:  # the best evaluation's weights, not the last step's
            best_model = load_checkpoint(best, device="cpu").model
            export = save_checkpoint(out_dir / "export", best_model, tokenizer, meta=best_meta(),
                                     dtype=cfg.export_dtype)
        else:
            export = save_checkpoint(out_dir / "export", model, tokenizer, meta=meta, dtype=cfg.export_dtype)
    total_elapsed = time.perf_counter() - run_start_time
    if cfg.progress:
        print(f"checkpoint: {ckpt_dir}  metrics: {metrics_path}  loss curve: {plot_path}"
              + (f"  export: {export}" if export else ""))
    return TrainResult(
        out_dir=out_dir,
        checkpoint=ckpt_dir,
        step=step,
        train_loss=last_loss,
        val_loss=val_loss,
        tokens_per_second=run_tokens / max(total_elapsed, 1e-9),
        metrics_path=metrics_path,
        plot_path=plot_path,
        export=export,
        best_step=best_step,
        best_val_loss=best_val,
        best=best,
        stopped_early=stopped_early,
    )


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


def _progress_bar(cfg, start_step: int):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.optim.max_iters, initial=start_step, disable=not cfg.progress, desc="train",
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
