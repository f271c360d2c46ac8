import math

import pytest
import torch

from synesthesia.checkpoint import load_checkpoint, save_checkpoint
from synesthesia.components import Conditioning, SamplingSettings
from synesthesia.errors import SynesthesiaError
from synesthesia.evaluate import bleu, distinct_n, evaluate
from synesthesia.model import GPT
from synesthesia.train import main

TEXT = "the moon is a silver coin in the well, the well is a mirror for the moon.\n\n" * 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    corpus = root / "moon.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    result = main([f"data.paths=[{corpus}]", f"out_dir={root / 'run'}", "data.val_fraction=0", "train=tiny",
                   "model.n_layer=1", "model.n_embd=32", "model.block_size=32", "optim.max_iters=80",
                   "optim.learning_rate=1e-2", "eval_interval=80", "progress=false", "device=cpu"])
    return result.checkpoint


def test_perplexity_of_trained_model_is_low_and_finite(trained):
    result = evaluate(trained, heldout_text="the moon is a silver coin in the well.", n_samples=0)
    assert math.isfinite(result["perplexity"]) and result["perplexity"] >= 1.0
    assert result["perplexity"] == pytest.approx(math.exp(result["heldout_loss"]))
    assert result["heldout_tokens"] == len("the moon is a silver coin in the well.") + 2  # <sep> + text + <eos>
    assert "bleu" not in result and "samples" not in result

    # The same model on text it never saw, and an untrained model of the same shape, do much worse.
    unseen = evaluate(trained, heldout_text="Zebras quickly vex jumpy wizards.", n_samples=0)
    ckpt = load_checkpoint(trained)
    torch.manual_seed(0)
    random_dir = save_checkpoint(trained.parent / "random", GPT(ckpt.config), ckpt.tokenizer)
    untrained = evaluate(random_dir, heldout_text="the moon is a silver coin in the well.", n_samples=0)
    assert result["perplexity"] < unseen["perplexity"] and result["perplexity"] * 5 < untrained["perplexity"]
    assert untrained["perplexity"] == pytest.approx(ckpt.tokenizer.vocab_size, rel=0.5)


def test_long_heldout_text_spans_several_windows(trained):
    short = evaluate(trained, heldout_text=TEXT[:20], n_samples=0)
    long = evaluate(trained, heldout_text=TEXT, n_samples=0)  # ~230 tokens: 8 windows of 32
    assert long["heldout_tokens"] == len(TEXT) + 2 and math.isfinite(long["perplexity"])
    assert short["heldout_tokens"] == 22


def test_bleu_and_distinct_of_generations(trained):
    settings = SamplingSettings(temperature=0.8, top_k=20, max_new_tokens=40)
    references = ["is a silver coin in the well, the well is a mirror", "is a mirror for the moon."]
    result = evaluate(trained, references=references, prompts=["the moon ", Conditioning(prefix="the well ")],
                      n_samples=3, settings=settings, seed=7)
    assert len(result["samples"]) == 6
    assert 0.0 <= result["bleu"] <= 100.0 and "tok:13a" in result["bleu_signature"]
    assert 0.0 < result["distinct_1"] <= 1.0 and 0.0 < result["distinct_2"] <= 1.0
    again = evaluate(trained, references=references, prompts=["the moon ", Conditioning(prefix="the well ")],
                     n_samples=3, settings=settings, seed=7)
    assert again["samples"] == result["samples"] and again["bleu"] == result["bleu"]
    # A model that learned the text reproduces it: far more overlap than with unrelated references.
    unrelated = evaluate(trained, references=["Zebras quickly vex jumpy wizards"] * 2,
                         prompts=["the moon ", "the well "], n_samples=3, settings=settings, seed=7)
    assert result["bleu"] > unrelated["bleu"]


def test_unconditioned_samples_against_all_references(trained):
    result = evaluate(trained, references=[TEXT.split("\n")[0]], n_samples=2,
                      settings=SamplingSettings(max_new_tokens=20))
    assert len(result["samples"]) == 2 and 0.0 <= result["bleu"] <= 100.0


def test_a_one_language_model_is_prompted_in_its_language(trained):
    ckpt = load_checkpoint(trained)
    assert ckpt.tokenizer.languages == []  # trained without labels: no control token to add
    labelled = trained.parent.parent / "labelled.txt"
    labelled.write_text(TEXT, encoding="utf-8")
    run = main([f"data.paths=[{labelled}]", "data.language=en", f"out_dir={trained.parent.parent / 'en'}",
                "train=tiny", "model.n_layer=1", "model.n_embd=32", "model.block_size=32", "optim.max_iters=2",
                "progress=false", "device=cpu"])
    tok = load_checkpoint(run.checkpoint).tokenizer
    result = evaluate(run.checkpoint, heldout_text="the moon", n_samples=0)
    assert result["heldout_tokens"] == len(tok.encode_document("the moon", "en")) - 1 == len("the moon") + 3


def test_metrics_helpers():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["月月光"], 1) == pytest.approx(2 / 3)  # CJK: characters are the units
    assert distinct_n([""], 2) == 0.0
    score, signature = bleu(["床前明月光疑是地上霜"], [["床前明月光疑是地上霜"]])
    assert score == pytest.approx(100.0) and "tok:zh" in signature
    score, _ = bleu(["the cat sat on the mat"], [["a dog ran in the park", "the cat sat on the mat"]])
    assert score == pytest.approx(100.0)  # multi-reference: the best match counts


def test_errors(trained):
    with pytest.raises(SynesthesiaError, match="2 prompts but 1 references"):
        evaluate(trained, references=["x"], prompts=["a", "b"])
    with pytest.raises(SynesthesiaError, match="held-out text is empty"):
        evaluate(trained, heldout_text="   ")
