import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from synesthesia.checkpoint import load_checkpoint
from synesthesia.data import WindowSampler, load_documents, pack_documents, split_train_val
from synesthesia.errors import ConfigError, CorpusError
from synesthesia.train import compose_config, learning_rate, main

VERSE = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;

Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;

But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
"""

POEMS = [
    {"text": "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "form": "五绝", "keywords": ["月", "霜"],
     "language": "zh"},
    {"text": "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。", "form": "五绝", "keywords": "山 河"},
    {"text": "月落乌啼霜满天，江枫渔火对愁眠。\n姑苏城外寒山寺，夜半钟声到客船。", "form": "七绝", "language": "zh"},
    {"text": "朝辞白帝彩云间，千里江陵一日还。\n两岸猿声啼不住，轻舟已过万重山。", "form": "七绝", "keywords": ["舟"]},
] * 6



TINY = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "model.dropout=0.1",
    "optim.batch_size=8", "optim.warmup_iters=3", "log_interval=1", "eval_interval=10", "eval_iters=2",
    "checkpoint_interval=5", "progress=false", "device=cpu", "dtype=float32",
]


@pytest.fixture
def verse(tmp_path):
    path = tmp_path / "sonnet.txt"
    path.write_text(VERSE * 3, encoding="utf-8")
    return path


@pytest.fixture
def poems(tmp_path):
    path = tmp_path / "poems.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in POEMS), encoding="utf-8")
    return path


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def step_losses(path):
    return {r["step"]: r["loss"] for r in rows(path) if "loss" in r}


def test_training_writes_metrics_plot_and_a_checkpoint_that_loads(tmp_path, verse):
    out = tmp_path / "run"
    result = main([f"data.paths=[{verse}]", f"out_dir={out}", "optim.max_iters=60", "optim.learning_rate=3e-3",
                   *TINY, "model.dropout=0.0"])
    assert result.step == 60 and result.checkpoint == out / "checkpoint"
    metrics = rows(out / "metrics.jsonl")
    losses = [r["loss"] for r in metrics if "loss" in r]
    assert len(losses) == 60 and losses[-1] < 0.7 * losses[0]
    evals = [r for r in metrics if "val_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30, 40, 50, 60]
    assert all(math.isclose(r["val_ppl"], math.exp(r["val_loss"])) for r in evals)
    assert all(r["tokens_per_s"] > 0 for r in metrics if "loss" in r)
    with Image.open(out / "loss.png") as image:
        assert image.format == "PNG" and image.size[0] > 300
    ckpt = load_checkpoint(out / "checkpoint")
    assert ckpt.config.n_layer == 1 and ckpt.tokenizer.vocab_size == ckpt.config.vocab_size
    assert ckpt.has_training_state
    assert ckpt.tokenizer.decode(ckpt.tokenizer.encode(VERSE)) == VERSE


def test_tiny_model_overfits_a_small_text(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("the moon is a silver coin in the well. " * 4, encoding="utf-8")
    result = main([f"data.paths=[{path}]", f"out_dir={tmp_path / 'run'}", "data.val_fraction=0", *TINY,
                   "model.dropout=0.0", "optim.max_iters=150", "optim.learning_rate=1e-2", "optim.min_lr=1e-3",
                   "log_interval=10", "eval_interval=150"])
    assert result.train_loss < 0.15
    assert result.val_loss is None


@pytest.mark.slow
def test_resume_after_a_kill_reproduces_the_uninterrupted_losses(tmp_path, verse):
    common = [f"data.paths=[{verse}]", "optim.max_iters=20", *TINY]  # dropout on: the RNG must be restored too
    reference = main(common + [f"out_dir={tmp_path / 'reference'}"])
    expected = step_losses(reference.metrics_path)
    assert sorted(expected) == list(range(1, 21))

    # A real SIGKILL in the middle of step 13: the last checkpoint is from step 10.
    killed = tmp_path / "killed"
    script = textwrap.dedent("""
        import os, signal, sys
        from synesthesia.train import compose_config, train
        def die(step, record):
            if step == 13:
                os.kill(os.getpid(), signal.SIGKILL)
        train(compose_config(sys.argv[1:]), on_step=die)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, *common, f"out_dir={killed}"], capture_output=True,
                          timeout=120, env=env)
    assert proc.returncode == -9, proc.stderr.decode()
    assert max(step_losses(killed / "metrics.jsonl")) == 13
    assert json.loads((killed / "checkpoint" / "train_state.json").read_text())["step"] == 10

    resumed = main(common + [f"out_dir={killed}", "resume=true"])
    assert resumed.step == 20
    got = step_losses(resumed.metrics_path)
    assert got == expected  # every step, bit for bit (the rows after step 10 were rewritten)
    assert [r["step"] for r in rows(resumed.metrics_path)].count(13) == 1
    reference_weights = load_checkpoint(reference.checkpoint).model.state_dict()
    for name, tensor in load_checkpoint(resumed.checkpoint).model.state_dict().items():
        assert torch.equal(tensor, reference_weights[name]), name


MILTON = """When I consider how my light is spent,
Ere half my days, in this dark world and wide,
And that one talent which is death to hide
Lodged with me useless, though my soul more bent
To serve therewith my Maker, and present
My true account, lest he returning chide;
"""


@pytest.mark.slow
def test_early_stopping_exports_the_best_evaluation_and_stops(tmp_path, verse):
    val = tmp_path / "milton.txt"
    val.write_text(MILTON, encoding="utf-8")
    # A constant learning rate, so the weights at a step do not depend on max_iters; the tiny model learns
    # the sonnet by heart, and its loss on another poem falls, then rises (around step 90 of 300).
    common = [f"data.paths=[{verse}]", f"data.val_paths=[{val}]", *TINY, "model.dropout=0.0", "model.n_embd=64",
              "optim.learning_rate=3e-3", "optim.min_lr=3e-3", "optim.warmup_iters=0"]
    run = [f"out_dir={tmp_path / 'run'}", "optim.max_iters=300", "early_stopping.patience=3", "export_dtype=float16"]
    result = main(common + run)
    val_losses = {r["step"]: r["val_loss"] for r in rows(result.metrics_path) if "val_loss" in r}
    assert result.stopped_early and result.step == result.best_step + 3 * 10 < 300  # three evaluations, no gain
    assert max(val_losses) == result.step
    assert result.best_val_loss == min(val_losses.values()) == val_losses[result.best_step]
    assert val_losses[result.step] > result.best_val_loss + 0.05  # it did overfit after the best step

    # best/ and the float16 export hold the best step's weights: those of a run that ended there.
    reference = main(common + [f"out_dir={tmp_path / 'reference'}", f"optim.max_iters={result.best_step}"])
    expected = load_checkpoint(reference.checkpoint).model.state_dict()
    best, export, last = (load_checkpoint(p) for p in (result.best, result.export, result.checkpoint))
    assert export.dtype == "float16" and result.best == tmp_path / "run" / "best"
    for name, tensor in expected.items():
        assert torch.equal(best.model.state_dict()[name], tensor), name
        assert torch.equal(export.model.state_dict()[name], tensor.half().float()), name
    assert not torch.equal(last.model.lm_head.weight, best.model.lm_head.weight)
    for ckpt in (best, export, last):
        assert ckpt.meta["best_step"] == result.best_step and ckpt.meta["best_val_loss"] == result.best_val_loss
    state = json.loads((result.checkpoint / "train_state.json").read_text())
    assert state["step"] == result.step and state["best_step"] == result.best_step and state["evals_since_best"] == 3

    # Resuming a stopped run trains no further; a larger patience goes on from where it stopped.
    again = main(common + run + ["resume=true"])
    assert again.stopped_early and again.step == result.step and again.best_step == result.best_step
    more = main(common + run[:-2] + ["early_stopping.patience=5", "resume=true"])
    assert more.step == result.best_step + 5 * 10 and more.best_step == result.best_step


@pytest.mark.slow
def test_without_early_stopping_options_the_best_is_still_exported(tmp_path, verse):
    val = tmp_path / "milton.txt"
    val.write_text(MILTON, encoding="utf-8")
    common = [f"data.paths=[{verse}]", f"data.val_paths=[{val}]", *TINY, "model.dropout=0.0", "model.n_embd=64",
              "optim.learning_rate=3e-3", "optim.min_lr=3e-3", "optim.warmup_iters=0", "optim.max_iters=150",
              "export_dtype=float32"]
    result = main(common + [f"out_dir={tmp_path / 'run'}"])
    assert result.step == 150 and not result.stopped_early and result.best_step < 150
    best, export = load_checkpoint(result.best), load_checkpoint(result.export)
    assert torch.equal(export.model.lm_head.weight, best.model.lm_head.weight)
    last = main(common + [f"out_dir={tmp_path / 'last'}", "early_stopping.keep_best=false"])
    assert last.best is None and not (tmp_path / "last" / "best").exists()
    assert torch.equal(load_checkpoint(last.export).model.lm_head.weight,
                       load_checkpoint(last.checkpoint).model.lm_head.weight)


def test_a_finished_run_is_not_overwritten_by_accident(tmp_path, verse):
    common = [f"data.paths=[{verse}]", f"out_dir={tmp_path / 'run'}", "optim.max_iters=2", *TINY]
    main(common)
    sha = load_checkpoint(tmp_path / "run" / "checkpoint").sha256
    with pytest.raises(ConfigError, match="already holds a training run.*resume=true.*overwrite=true"):
        main(common + ["seed=1"])
    assert load_checkpoint(tmp_path / "run" / "checkpoint").sha256 == sha
    main(common + ["seed=1", "overwrite=true"])
    assert load_checkpoint(tmp_path / "run" / "checkpoint").sha256 != sha


def test_progress_bar_shows_loss_speed_and_eta(tmp_path, verse, capsys):
    main([f"data.paths=[{verse}]", f"out_dir={tmp_path / 'run'}", "optim.max_iters=3", *TINY, "progress=true"])
    err = capsys.readouterr().err
    assert "train: 100%" in err and "3/3" in err and "loss=" in err and "tok_s=" in err
    assert "<00:00" in err  # tqdm's elapsed<remaining (the ETA)


def test_resume_without_a_checkpoint(tmp_path, verse):
    with pytest.raises(Exception, match="no checkpoint to resume"):
        main([f"data.paths=[{verse}]", f"out_dir={tmp_path / 'none'}", "resume=true", *TINY])


def test_conditioned_jsonl_windows_start_at_records(tmp_path, poems):
    out = tmp_path / "run"
    main([f"data.paths=[{poems}]", f"out_dir={out}", "optim.max_iters=5", *TINY])
    tok = load_checkpoint(out / "checkpoint").tokenizer
    assert set(tok.forms) == {"五绝", "七绝"} and tok.languages == ["zh"]

    docs = load_documents([poems])
    assert docs[1].keywords == ["山", "河"] and docs[1].language is None
    corpus = pack_documents(docs, tok)
    first = corpus.tokens[: corpus.starts[1]].tolist()
    assert first[:5] == [tok.bos_id, tok.token_id("<lang:zh>"), tok.token_id("<form:五绝>"),
                         tok.token_id("<kw>"), tok.token_id("月")]
    assert first[-1] == tok.eos_id and tok.decode(first) == "月 霜" + POEMS[0]["text"]
    train_split, val_split = split_train_val(corpus, 0.1)
    assert int(val_split.tokens[0]) == tok.bos_id  # the split falls on a record boundary
    sampler = WindowSampler(train_split, 48, 64, "auto", seed=0)
    assert sampler.mode == "boundary"
    x, y = sampler.batch()
    assert x.shape == y.shape == (64, 48)
    assert (x[:, 0] == tok.bos_id).all() and torch.equal(x[:, 1:], y[:, :-1])


def test_separate_validation_files(tmp_path, poems, verse):
    out = tmp_path / "run"
    result = main([f"data.paths=[{poems}]", f"data.val_paths=[{verse}]", f"out_dir={out}", "optim.max_iters=2",
                   "eval_interval=2", *TINY])
    state = json.loads((out / "checkpoint" / "train_state.json").read_text())
    packed_poems = pack_documents(load_documents([poems]), load_checkpoint(out / "checkpoint").tokenizer)
    assert state["data"]["train_tokens"] == len(packed_poems)  # all of it: nothing held out of the train files
    assert state["data"]["val_tokens"] > len(VERSE)  # English letters the tokenizer never saw: bytes
    assert math.isfinite(result.val_loss)


def test_bpe_tokenizer_and_bf16_autocast_on_cpu(tmp_path, verse):
    out = tmp_path / "run"
    result = main([f"data.paths=[{verse}]", f"out_dir={out}", "tokenizer.kind=bpe", "tokenizer.vocab_size=320",
                   "dtype=bfloat16", "optim.max_iters=4", *TINY])
    assert math.isfinite(result.train_loss)
    ckpt = load_checkpoint(out / "checkpoint")
    assert type(ckpt.tokenizer).__name__ == "BPETokenizer" and ckpt.config.vocab_size == 320


def test_fine_tune_from_a_checkpoint_keeps_its_tokenizer(tmp_path, verse):
    base = main([f"data.paths=[{verse}]", f"out_dir={tmp_path / 'base'}", "optim.max_iters=3", *TINY,
                 "export_dtype=float16"])
    assert load_checkpoint(base.export).dtype == "float16"
    new_text = tmp_path / "new.txt"
    new_text.write_text("Zephyr quietly jinxed 夜 whims 🌙\n" * 40, encoding="utf-8")  # unseen characters
    tuned = main([f"data.paths=[{new_text}]", f"out_dir={tmp_path / 'tuned'}", f"init_from={base.checkpoint}",
                  "optim.max_iters=3", *TINY, "model.n_layer=3"])
    before, after = load_checkpoint(base.checkpoint), load_checkpoint(tuned.checkpoint)
    assert after.tokenizer.vocab_size == before.tokenizer.vocab_size
    assert after.config.n_layer == 1  # the model is the checkpoint's, whatever model.* says
    assert after.tokenizer.decode(after.tokenizer.encode("Zephyr 夜 🌙")) == "Zephyr 夜 🌙"
    assert not torch.equal(after.model.lm_head.weight, before.model.lm_head.weight)
    saved = json.loads((tuned.checkpoint / "train_state.json").read_text())["config"]["model"]
    assert saved["n_layer"] == 1 and saved["n_embd"] == 32  # train_state describes the real model


def test_resume_takes_the_saved_config_and_never_lengthens_a_run_unasked(tmp_path, verse, capsys):
    out = tmp_path / "run"
    first = main([f"data.paths=[{verse}]", f"out_dir={out}", "optim.max_iters=10", *TINY, "progress=true"])
    assert first.step == 10
    capsys.readouterr()
    # The README's command as written: no data.paths, no model options; the finished run stays finished.
    again = main([f"out_dir={out}", "resume=true"])
    assert again.step == 10 and "already finished: step 10 of optim.max_iters=10" in capsys.readouterr().out
    state = json.loads((out / "checkpoint" / "train_state.json").read_text())
    assert state["step"] == 10 and state["config"]["model"]["n_embd"] == 32
    assert state["config"]["optim"]["max_iters"] == 10
    assert state["dtype"]["dtype"] == "float32" and state["dtype"]["reason"] == "set explicitly"
    # Asked for: train on to step 15 with the saved data, model and schedule.
    # log_interval=10 is the default, yet asked for: it replaces the saved 1.
    longer = main([f"out_dir={out}", "resume=true", "optim.max_iters=15", "log_interval=10"])
    assert longer.step == 15 and max(step_losses(longer.metrics_path)) == 15
    saved = json.loads((out / "checkpoint" / "train_state.json").read_text())["config"]
    assert saved["optim"]["max_iters"] == 15 and saved["data"]["paths"] == [str(verse)]
    assert saved["log_interval"] == 10 and saved["eval_iters"] == 2  # the rest is the saved run's
    with pytest.raises(ConfigError, match="model.n_layer=3 cannot change when resuming"):
        main([f"out_dir={out}", "resume=true", "model.n_layer=3"])
    # A training run's folder is a model: its best evaluation's weights.
    assert load_checkpoint(out).path == out / "best"


def test_dtype_auto_records_what_the_hardware_chose(tmp_path, verse):
    out = tmp_path / "run"
    result = main([f"data.paths=[{verse}]", f"out_dir={out}", "optim.max_iters=2", *TINY, "dtype=auto"])
    state = json.loads((out / "checkpoint" / "train_state.json").read_text())
    assert state["dtype"]["requested"] == "auto" and state["dtype"]["dtype"] in ("float32", "bfloat16")
    assert state["dtype"]["reason"] and result.dtype == state["dtype"]["dtype"]
    assert load_checkpoint(out / "checkpoint").meta["train_dtype"] == result.dtype


def test_empty_corpus_names_the_path(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty.txt: empty corpus"):
        main([f"data.paths=[{empty}]", f"out_dir={tmp_path / 'run'}", *TINY])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match="folder: empty corpus"):
        load_documents([folder])
    with pytest.raises(CorpusError, match="missing.txt: corpus file or folder not found"):
        load_documents([tmp_path / "missing.txt"])
    assert not (tmp_path / "run").exists()


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"title": "no text"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: .*\"text\""):
        load_documents([path])
    path.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: not valid JSON"):
        load_documents([path])


def test_folders_and_splits(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n\nthree", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"text": "four", "form": "haiku"}\n', encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    assert [d.text for d in load_documents([tmp_path])] == ["one\ntwo", "three", "four"]
    assert [d.text for d in load_documents([tmp_path], split="line")] == ["one", "two", "three", "four"]
    assert [d.text for d in load_documents([tmp_path / "a.txt"], split="file")] == ["one\ntwo\n\nthree"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_layers=4", "n_layers"),
        ("optim.max_iters=lots", "lots"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("data.split=sentence", "data.split"),
        ("tokenizer.kind=word", "tokenizer.kind"),
        ("device=tpu", "device"),
        ("early_stopping.patience=0", "early_stopping.patience"),
        ("data.val_paths=val.txt", r"brackets, e.g. data.paths=\[corpus.txt\]"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, verse, override, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        main([f"data.paths=[{verse}]", f"out_dir={out}", override])
    assert not out.exists()


def test_presets_compose():
    cfg = compose_config(["train=tiny"])
    assert cfg.model.n_layer == 2 and cfg.optim.max_iters == 300
    assert compose_config(["train=tiny", "model.n_layer=3"]).model.n_layer == 3
    assert compose_config(["train=tang"]).data.window_start == "boundary"


def test_learning_rate_schedule():
    o = compose_config(["optim.max_iters=100", "optim.warmup_iters=10"]).optim
    rates = [learning_rate(s, o) for s in range(101)]
    assert rates[0] < rates[9] < rates[10] <= o.learning_rate
    assert max(rates) == pytest.approx(o.learning_rate, rel=0.1)
    assert rates[100] == pytest.approx(o.min_lr)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


@pytest.mark.slow
def test_readme_training_commands_as_written(tmp_path):
    """The README's train / resume / run-with-the-run's-folder commands, through the real CLI (small sizes)."""
    from tests.conftest import run_cli

    poems = tmp_path / "my_poems"
    poems.mkdir()
    (poems / "sonnet.txt").write_text(VERSE * 3, encoding="utf-8")
    small = ["train=tiny", "optim.max_iters=12", "eval_interval=6", "checkpoint_interval=6", "progress=false"]
    first = run_cli("train", "data.paths=[my_poems/]", "out_dir=runs/mine", *small, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "out_dir=runs/mine", "resume=true", cwd=tmp_path)  # exactly as the README writes it
    assert again.returncode == 0, again.stderr
    assert "already finished: step 12 of optim.max_iters=12" in again.stdout
    art = run_cli("run", "model.name=runs/mine", "form=free", "theme=the sea at night", "hydra.run.dir=art",
                  cwd=tmp_path)
    assert art.returncode == 0, art.stderr
    manifest = json.loads((tmp_path / "art" / "artwork" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["path"] == "runs/mine/best"  # the run's best evaluation
