import json
import os

import pytest
import torch

from synesthesia.checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    load_train_state,
    save_checkpoint,
)
from synesthesia.errors import CheckpointError
from synesthesia.fileio import sha256_file
from synesthesia.model import GPT, GPTConfig
from synesthesia.tokenizer import CharTokenizer, control_tokens_for

TEXT = "床前明月光，疑是地上霜。举头望明月，低头思故乡。 Shall I compare thee to a summer's day?"


def tiny(tokenizer, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


@pytest.fixture
def tok():
    return CharTokenizer.train([TEXT], control_tokens_for(["zh"], ["七绝"]))


def logits_of(model, tok):
    idx = torch.tensor([tok.encode("明月光")])
    with torch.no_grad():
        return model(idx, idx)[0]


def test_round_trip_with_tied_weights(tmp_path, tok):
    model = tiny(tok)
    path = save_checkpoint(tmp_path / "ckpt", model, tok, meta={"name": "test"})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    ckpt = load_checkpoint(path)
    assert ckpt.meta == {"name": "test"}
    assert ckpt.config == model.config
    assert ckpt.tokenizer.encode(TEXT) == tok.encode(TEXT)
    assert ckpt.sha256 == sha256_file(path / "model.safetensors") and len(ckpt.sha256) == 64
    assert torch.equal(logits_of(ckpt.model, tok), logits_of(model, tok))
    # Tied weights stay tied after loading (stored once).
    assert ckpt.model.lm_head.weight.data_ptr() == ckpt.model.transformer.wte.weight.data_ptr()
    assert not ckpt.model.training


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage_is_smaller_and_close(tmp_path, tok, dtype):
    model = tiny(tok, n_embd=32)
    full = save_checkpoint(tmp_path / "full", model, tok)
    half = save_checkpoint(tmp_path / "half", model, tok, dtype=dtype)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    ckpt = load_checkpoint(half)
    assert ckpt.dtype == dtype
    assert next(ckpt.model.parameters()).dtype == torch.float32
    torch.testing.assert_close(logits_of(ckpt.model, tok), logits_of(model, tok), atol=0.05, rtol=0.05)


def test_optimizer_and_train_state_round_trip(tmp_path, tok):
    model = tiny(tok)
    opt = model.configure_optimizers(0.1, 1e-3)
    idx = torch.tensor([tok.encode(TEXT)[:17]])
    for _ in range(2):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
    rng = torch.get_rng_state()
    state = {"step": 2, "best_val_loss": 1.5, "rng": {"torch": rng, "data": torch.tensor([1, 2, 3])}}
    path = save_checkpoint(tmp_path / "ckpt", model, tok, optimizer=opt, train_state=state)
    assert load_checkpoint(path).has_training_state

    restored = load_train_state(path)
    assert restored["step"] == 2 and restored["best_val_loss"] == 1.5
    assert torch.equal(restored["rng"]["torch"], rng)
    assert json.loads((path / "train_state.json").read_text())["step"] == 2

    fresh = tiny(tok).configure_optimizers(0.1, 1e-3)
    load_optimizer_state(path, fresh)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a["state"][i][key], b["state"][i][key])


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path, tok):
    target = tmp_path / "ckpt"
    save_checkpoint(target, tiny(tok), tok, meta={"v": 1})
    save_checkpoint(target, tiny(tok), tok, meta={"v": 2})
    assert load_checkpoint(target).meta == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, tok):
    target = tmp_path / "ckpt"
    save_checkpoint(target, tiny(tok), tok, meta={"v": 1})

    class BrokenTokenizer:
        def save(self, directory):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, tiny(tok), BrokenTokenizer(), meta={"v": 2})
    assert load_checkpoint(target).meta == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_crash_between_renames_is_recovered(tmp_path, tok):
    target = tmp_path / "ckpt"
    save_checkpoint(target, tiny(tok), tok, meta={"v": 1})
    os.rename(target, tmp_path / ".ckpt.old-deadbeef")  # as if killed between the two renames
    with pytest.warns(UserWarning, match="restored the previous checkpoint"):
        assert load_checkpoint(target).meta == {"v": 1}


def test_a_later_save_clears_copies_left_by_a_crash(tmp_path, tok):
    target = tmp_path / "ckpt"
    save_checkpoint(target, tiny(tok), tok, meta={"v": 1})
    os.rename(target, tmp_path / ".ckpt.old-deadbeef")
    save_checkpoint(target, tiny(tok), tok, meta={"v": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert load_checkpoint(target).meta == {"v": 2}


def test_refuses_to_overwrite_a_folder_that_is_not_a_checkpoint(tmp_path, tok):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "poem.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="notes.*not a checkpoint"):
        save_checkpoint(tmp_path / "notes", tiny(tok), tok)
    assert (tmp_path / "notes" / "poem.txt").read_text() == "keep me"


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.*not found"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_missing_file_is_named(tmp_path, tok, name):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    (path / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_corrupt_file_is_named(tmp_path, tok, name):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])  # truncated, as by an interrupted copy
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(path)


def test_config_without_required_key(tmp_path, tok):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    config = json.loads((path / "config.json").read_text())
    del config["model"]["n_layer"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json.*n_layer"):
        load_checkpoint(path)


def test_tokenizer_model_vocab_mismatch(tmp_path, tok):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    CharTokenizer.train(["abc"]).save(path)  # a tokenizer from another model
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*vocab_size"):
        load_checkpoint(path)


def test_weights_that_do_not_match_config(tmp_path, tok):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    config = json.loads((path / "config.json").read_text())
    config["model"]["n_embd"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*wrong shape"):
        load_checkpoint(path)


def test_resume_files_missing(tmp_path, tok):
    path = save_checkpoint(tmp_path / "ckpt", tiny(tok), tok)
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors"):
        load_optimizer_state(path, tiny(tok).configure_optimizers(0.1, 1e-3))
    with pytest.raises(CheckpointError, match=r"train_state\.json"):
        load_train_state(path)
