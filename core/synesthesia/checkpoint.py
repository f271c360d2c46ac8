"""Checkpoints: one folder per model, safetensors + JSON only (nothing is ever unpickled).

    NAME/
      model.safetensors        weights (fp32, or fp16/bf16 for shipping); tied weights stored once
      config.json              {"format_version", "model": GPTConfig fields, "meta": {...}, "dtype"}
      tokenizer.json           see synesthesia.tokenizer (absent for a model over its own integer tokens,
                               e.g. the MIDI plugin's melody GPT: config.json says "tokenizer": null)
      optimizer.safetensors    training only: AdamW moments; param groups in the safetensors metadata
      train_state.json         training only: step, best val loss, data position, ...
      train_state.safetensors  training only: the tensor parts of the train state (RNG states)

A checkpoint is written into a temporary sibling folder and moved into place with renames, so a
crash never leaves a half-written checkpoint where a good one was. Replacing an existing checkpoint
takes two renames (old aside, new in); if a crash falls between them, the previous checkpoint is left
as ``.NAME.old-*`` and ``load_checkpoint`` moves it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synesthesia.errors import CheckpointError
from synesthesia.fileio import fsync_dir, process_alive, read_json, sha256_file, swap_into_place
from synesthesia.tokenizer import TOKENIZER_FILE, load_tokenizer

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAIN_STATE_FILE = "train_state.json"
TRAIN_TENSORS_FILE = "train_state.safetensors"
FORMAT_VERSION = 1
REQUIRED_MODEL_KEYS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
STORAGE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``sha256`` is the checksum of ``model.safetensors`` (for manifests)."""

    model: Any  # synesthesia.model.GPT, in eval mode
    tokenizer: Any
    config: Any  # synesthesia.model.GPTConfig
    meta: dict = field(default_factory=dict)
    path: Path = Path(".")
    sha256: str = ""
    dtype: str = "float32"  # how the weights were stored

    @property
    def has_training_state(self) -> bool:
        return (self.path / OPTIMIZER_FILE).is_file() and (self.path / TRAIN_STATE_FILE).is_file()


# --------------------------------------------------------------------------------------------------
# Saving


def _save_weights(weights: dict, path: Path, metadata: dict | None) -> None:
    """safetensors' ``save_file``, its I/O failures (a full disk) raised as the OSError they are."""
    from safetensors.torch import save_file

    try:
        save_file(weights, path, metadata=metadata)
    except Exception as exc:  # SafetensorError: "I/O error: No space left on device (os error 28)"
        found = re.search(r"os error (\d+)", str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def save_checkpoint(
    directory: str | os.PathLike,
    model,
    tokenizer,
    *,
    optimizer=None,
    train_state: dict | None = None,
    meta: dict | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    ``dtype`` ('float32', 'float16' or 'bfloat16') is how the weights are stored; training
    checkpoints keep float32, shipped models may halve their size. ``train_state`` may nest dicts;
    its tensors go to ``train_state.safetensors`` and everything else to ``train_state.json``.
    """
    import torch

    if dtype not in STORAGE_DTYPES:
        raise CheckpointError(f"storage dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    _refuse_to_replace_non_checkpoint(target)
    _remove_stale_temporaries(target)
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile

    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        weights, aliases = _unique_tensors(model.state_dict())
        storage = getattr(torch, dtype)
        weights = {k: (v.to(storage) if v.is_floating_point() else v).contiguous().cpu() for k, v in weights.items()}
        _save_weights(weights, tmp / MODEL_FILE, {"format": "pt", "aliases": json.dumps(aliases)})
        config = {
            "format_version": FORMAT_VERSION,
            "model": dataclasses.asdict(model.config),
            "dtype": dtype,
            "tokenizer": TOKENIZER_FILE if tokenizer is not None else None,
            "meta": meta or {},
        }
        _write_json(tmp / CONFIG_FILE, config)
        if tokenizer is not None:
            tokenizer.save(tmp)
        if optimizer is not None:
            _save_optimizer(optimizer, tmp / OPTIMIZER_FILE)
        if train_state is not None:
            tensors, plain = _split_tensors(train_state)
            _save_weights({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp / TRAIN_TENSORS_FILE, None)
            _write_json(tmp / TRAIN_STATE_FILE, plain)
        umask = os.umask(0)
        os.umask(umask)
        for child in tmp.iterdir():
            os.chmod(child, 0o666 & ~umask)  # mkstemp and safetensors leave files private (0600)
            _fsync_file(child)
        fsync_dir(tmp)
        swap_into_place(tmp, target)
        # Copies set aside by a save that crashed between its renames are obsolete now.
        for leftover in target.parent.glob(f".{target.name}.old-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _unique_tensors(state_dict: dict) -> tuple[dict, dict]:
    """Drop tensors that share storage with an earlier one (tied weights); return (tensors, alias→name)."""
    seen: dict[tuple, str] = {}
    unique, aliases = {}, {}
    for name, tensor in state_dict.items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()), tensor.dtype)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = tensor
    return unique, aliases


def _refuse_to_replace_non_checkpoint(target: Path) -> None:
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / CONFIG_FILE).exists())):
        raise CheckpointError(
            f"{target}: exists and is not a checkpoint folder; refusing to overwrite it, choose another path"
        )


def _remove_stale_temporaries(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.split(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def recover_interrupted_swap(target: Path) -> None:
    """If a save crashed between its two renames, put the previous checkpoint back."""
    if target.exists():
        return
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    complete = [p for p in olds if (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file()]
    if complete:
        os.rename(complete[-1], target)
        warnings.warn(f"{target}: restored the previous checkpoint left by an interrupted save", stacklevel=3)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _split_tensors(tree: dict, prefix: str = "") -> tuple[dict, dict]:
    """Separate a nested dict into {dotted.name: tensor} and the JSON-able rest."""
    import torch

    tensors, plain = {}, {}
    for key, value in tree.items():
        if "." in str(key):
            raise ValueError(f"train_state keys may not contain '.': {key!r}")
        if isinstance(value, torch.Tensor):
            tensors[prefix + str(key)] = value
        elif isinstance(value, dict):
            sub_tensors, sub_plain = _split_tensors(value, prefix + str(key) + ".")
            tensors.update(sub_tensors)
            if sub_plain or not sub_tensors:
                plain[key] = sub_plain
        else:
            plain[key] = value
    return tensors, plain


def _merge_tensors(plain: dict, tensors: dict) -> dict:
    merged = json.loads(json.dumps(plain))
    for dotted, tensor in tensors.items():
        node = merged
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = tensor
    return merged


def _save_optimizer(optimizer, path: Path) -> None:
    import torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    _save_weights(tensors, path, metadata)


# --------------------------------------------------------------------------------------------------
# Loading


def load_checkpoint(directory: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    """Load and check a checkpoint folder; every problem raises CheckpointError naming the file."""
    from safetensors import safe_open

    from synesthesia.model import GPT

    path = model_folder(Path(directory))
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint folder not found; give the folder that holds {MODEL_FILE}")
    config_data = _read_config(path)
    model_config = _model_config(config_data, path / CONFIG_FILE)
    tokenizer = load_tokenizer(path) if config_data.get("tokenizer", TOKENIZER_FILE) is not None else None
    weights_path = path / MODEL_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing; the checkpoint is incomplete, re-download or retrain it")
    if tokenizer is not None and tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{path / TOKENIZER_FILE}: tokenizer has {tokenizer.vocab_size} tokens but the model in "
            f"{weights_path.name} has vocab_size {model_config.vocab_size}; the tokenizer belongs to another model"
        )

    try:
        with safe_open(weights_path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}
        aliases = json.loads(metadata.get("aliases", "{}"))
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"{weights_path}: corrupt or unreadable ({exc}); re-download or retrain it") from None

    model = GPT(model_config)
    expected = model.state_dict()
    weights = {k: v.to(expected[k].dtype) if k in expected and v.is_floating_point() else v for k, v in weights.items()}
    missing = [k for k in expected if k not in weights and k not in aliases]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [k for k, v in weights.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if names
        )
        raise CheckpointError(f"{weights_path}: weights do not match {CONFIG_FILE} ({details}); re-download or retrain")
    for alias, source in aliases.items():
        weights.setdefault(alias, weights[source])
    model.load_state_dict(weights, strict=True)
    model.to(device)
    model.eval()
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        config=model_config,
        meta=config_data.get("meta", {}),
        path=path,
        sha256=sha256_file(weights_path),
        dtype=config_data.get("dtype", "float32"),
    )


RUN_MODEL_FOLDERS = ("best", "export", "checkpoint")  # in a training run's out_dir, the first present is the model


def model_folder(path: Path) -> Path:
    """The checkpoint folder ``path`` names: itself, or for a training run's ``out_dir`` (``synesthesia run
    model.name=runs/mine``) its ``best/`` (the best evaluation's weights, float32), else ``export/``, else
    ``checkpoint/`` (the last step)."""
    recover_interrupted_swap(path)
    if not path.is_dir() or (path / CONFIG_FILE).exists():
        return path
    for name in RUN_MODEL_FOLDERS:
        recover_interrupted_swap(path / name)
        if (path / name / CONFIG_FILE).is_file():
            return path / name
    return path


def _read_config(path: Path) -> dict:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing; the checkpoint is incomplete, re-download or retrain it")
    data = read_json(config_path, CheckpointError, "re-download or retrain it")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{config_path}: has no 'model' section; this is not a synesthesia checkpoint")
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{config_path}: format_version must be a whole number, not {version!r}; "
                              "the file is damaged: re-download or retrain it")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: made by a newer synesthesia (format {version}); upgrade")
    return data


def _model_config(config_data: dict, config_path: Path):
    from synesthesia.errors import ConfigError
    from synesthesia.model import GPTConfig

    values = config_data["model"]
    missing = [k for k in REQUIRED_MODEL_KEYS if k not in values]
    if missing:
        raise CheckpointError(f"{config_path}: model section lacks {', '.join(missing)}; re-download or retrain it")
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"{config_path}: unknown model keys {', '.join(unknown)}; made by another synesthesia version?"
        )
    try:
        return GPTConfig(**values)
    except (TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{config_path}: bad model config ({exc}); re-download or retrain it") from None


def load_optimizer_state(directory: str | os.PathLike, optimizer) -> None:
    """Restore AdamW moments and param groups saved by ``save_checkpoint`` into ``optimizer``."""
    from safetensors import safe_open

    path = Path(directory) / OPTIMIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this checkpoint cannot resume training (use init_from to fine-tune)")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        groups = json.loads(metadata["param_groups"])
        scalars = json.loads(metadata.get("scalars", "{}"))
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable ({exc}); resume from an earlier checkpoint") from None
    state: dict[int, dict] = {}
    for dotted, value in list(tensors.items()) + list(scalars.items()):
        index, key = dotted.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not fit this model's optimizer ({exc}); start a new run") from None


def load_train_state(directory: str | os.PathLike) -> dict:
    """The train state saved with a checkpoint (tensors restored from ``train_state.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(directory)
    json_path, tensor_path = path / TRAIN_STATE_FILE, path / TRAIN_TENSORS_FILE
    if not json_path.is_file():
        raise CheckpointError(f"{json_path}: missing; this checkpoint cannot resume training (use init_from)")
    plain = read_json(json_path, CheckpointError, "resume from an earlier checkpoint")
    tensors = {}
    if tensor_path.is_file():
        try:
            tensors = load_file(tensor_path)
        except Exception as exc:
            raise CheckpointError(f"{tensor_path}: corrupt ({exc}); resume from an earlier checkpoint") from None
    return _merge_tensors(plain, tensors)
