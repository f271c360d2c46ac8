"""The `hf` generator on real transformers models: our exported tang (constrained 七绝 valid, greedy tokens
the same as the native path), exported shakespeare, a byte-level-BPE model trained here with our own trainer
(constraints meet multi-character tokens), a chat template, streaming and the one-line failures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from synesthesia.components import GenerationRequest
from synesthesia.errors import SynesthesiaError
from synesthesia.export import export_hf
from synesthesia.pipeline import GeneratorCache, plan, run_pipeline
from synesthesia.plugins import get_registry, resolve_checkpoint
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: export_hf(resolve_checkpoint(name), root / name, name=name) for name in ("tang", "shakespeare")}


@pytest.fixture(scope="module")
def cache():
    return GeneratorCache()


def hf_config(folder, form, **generation):
    return {"form": form, "theme": "秋月" if form.startswith(("五", "七")) else "the sea at night",
            "model": {"generator": "hf", "name": str(folder), "threads": 1},
            "generation": {"candidates": 4, "max_attempts": 1, **generation}, "pipeline": {"renderers": []}}


def request_for(config, seed=0, n=1):
    p = plan(config)
    return p, GenerationRequest(
        conditioning=p.form.conditioning(p.request), sampling=replace(p.sampling, seed=seed), n=n,
        make_logits_processors=lambda tok: p.form.logits_processors(tok, p.request))


def test_constrained_qijue_through_hf_is_valid_like_the_native_path(tmp_path, exported, cache):
    valid = total = 0
    for seed in (0, 1, 2):
        config = {**hf_config(exported["tang"], "七绝"), "seed": seed}
        artwork = run_pipeline(config, tmp_path / str(seed), generators=cache, log=lambda m: None)
        valid += sum(c["ok"] for c in artwork.manifest["candidates"])
        total += len(artwork.manifest["candidates"])
        assert artwork.manifest["validation"]["ok"], artwork.text
    assert valid == total == 12  # every candidate: form, rhyme and tone
    model = artwork.manifest["model"]
    assert model["generator"] == "hf" and model["backend"].startswith("transformers ")
    assert model["model_id"] == "tang" and len(model["sha256"]) == 64 and model["path"] == str(exported["tang"])
    assert model["prompt"].startswith("<bos><lang:zh><form:七绝><kw>") and model["prompt"].endswith("<sep>")
    assert model["tokenizer_kind"] == "char" and model["exported_from"]["name"] == "tang"


def test_greedy_tokens_through_hf_are_the_native_tokens(exported, cache):
    config = hf_config(exported["tang"], "七绝", temperature=0.0, repetition_penalty=1.0)
    p, request = request_for(config)
    hf = cache.get(p)
    native = get_registry().generator("transformer").load("tang")
    assert hf.generate(request) == native.generate(request)
    assert "".join(hf.stream(request)) == hf.generate(request)[0]  # streaming gives the same text
    assert hf.generate(replace(request, n=2)) == native.generate(request) * 2  # greedy n: n equal rows


def test_exported_shakespeare_runs_a_pipeline_and_slides_its_window_like_the_native_path(tmp_path, exported, cache):
    config = hf_config(exported["shakespeare"], "limerick", max_new_tokens=120)
    artwork = run_pipeline(config, tmp_path, generators=cache, log=lambda m: None)
    assert artwork.text.strip()
    assert artwork.manifest["model"]["prompt"] == "<bos><lang:en><kw>sea night</kw><sep>ROMEO:\n"  # its primer
    # A limerick outgrows the model's 128-position context: the window slides, greedy tokens stay native.
    p, request = request_for(hf_config(exported["shakespeare"], "limerick", temperature=0.0, repetition_penalty=1.0))
    native = get_registry().generator("transformer").load("shakespeare").generate(request)
    assert cache.get(p).generate(request) == native and len(native[0]) > 128


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    """A tiny byte-level-BPE model trained with our own trainer, exported."""
    from synesthesia.train import main

    root = tmp_path_factory.mktemp("bpe")
    text = root / "verse.txt"
    text.write_text(("the sea at night is dark and wide\nthe moon above the silver tide\n"
                     "and all the boats come home to rest\nbeneath the stars upon the west\n\n") * 30, encoding="utf-8")
    main([f"data.paths=[{text}]", f"out_dir={root / 'run'}", "tokenizer.kind=bpe", "tokenizer.vocab_size=300",
          "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=64", "optim.max_iters=120",
          "optim.learning_rate=0.01",
          "optim.batch_size=8", "optim.warmup_iters=3", "eval_interval=120", "eval_iters=1", "checkpoint_interval=120",
          "progress=false", "device=cpu"])
    return export_hf(root / "run" / "checkpoint", root / "hf")


def test_byte_level_bpe_model_keeps_the_line_count_with_multi_character_tokens(tmp_path, bpe_model, cache):
    config = hf_config(bpe_model, "haiku", candidates=3, max_new_tokens=100)
    p, request = request_for(config, n=3)
    loaded = cache.get(p)
    assert loaded.tokenizer.kind == "bpe"
    assert max(len(loaded.tokenizer.id_to_piece(i)) for i in range(loaded.tokenizer.vocab_size)) > 3
    for text in loaded.generate(request):
        assert len([line for line in text.strip().split("\n") if line.strip()]) == 3, text
    artwork = run_pipeline(config, tmp_path, generators=cache, log=lambda m: None)
    assert len([line for line in artwork.text.split("\n") if line.strip()]) == 3


def test_a_chat_model_gets_the_forms_rules_through_its_chat_template(tmp_path, bpe_model):
    from transformers import AutoTokenizer

    folder = tmp_path / "chat"
    folder.mkdir()
    for f in bpe_model.iterdir():
        if f.name != "synesthesia.json":  # not one of ours: no control-token prompt
            (folder / f.name).write_bytes(f.read_bytes())
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tok.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(folder)
    config = hf_config(folder, "haiku", candidates=2, max_new_tokens=30)
    p, request = request_for(config, n=2)
    loaded = get_registry().generator("hf").load(str(folder))
    texts = loaded.generate(request)
    assert len(texts) == 2 and loaded.describe()["prompt_format"] == "chat-template"
    prompt = loaded.describe_request(request)["prompt"]
    assert prompt.startswith("<system>") and "haiku" in prompt and "Theme: " in prompt
    assert prompt.endswith("<assistant>")


def test_a_model_id_from_the_local_hugging_face_cache(tmp_path, exported, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--local--tang" / "snapshots" / sha  # the hub cache's own layout
    snapshot.mkdir(parents=True)
    for f in exported["tang"].iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (tmp_path / "hub" / "models--local--tang" / "refs").mkdir()
    (tmp_path / "hub" / "models--local--tang" / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = get_registry().generator("hf").load("local/tang")
    described = loaded.describe()
    assert described["model_id"] == "local/tang" and described["revision"] == sha
    assert described["path"] == str(snapshot) and described["prompt_format"] == "synesthesia-controls"
    with pytest.raises(SynesthesiaError, match="no model 'local/other' in the local Hugging Face cache"):
        get_registry().generator("hf").load("local/other")


def test_one_line_failures(exported):
    generator = get_registry().generator("hf")
    with pytest.raises(SynesthesiaError, match="is a synesthesia checkpoint"):
        generator.load("tang")
    with pytest.raises(SynesthesiaError, match="never downloads"):
        generator.load("nobody/no-such-model-xyz")
    with pytest.raises(SynesthesiaError, match="dtype=int8"):
        generator.load(str(exported["tang"]), dtype="int8")


def test_dtype_auto_is_float32_on_a_cpu(exported):
    """model.dtype=auto works with the hf generator too: on a CPU it is float32 (our CPU timings are of our own
    model, not of an arbitrary transformers one, and auto never picks what might be slower than float32)."""
    loaded = get_registry().generator("hf").load(str(exported["tang"]), dtype="auto")
    assert loaded.describe()["inference_dtype"] == "float32"


@pytest.mark.slow
def test_the_goal_command(tmp_path, exported):
    # The command:
    result = run_cli("run", "form=七绝", "theme=秋月", "model=hf", f"model.name={exported['tang']}",
                     "pipeline=text_only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(next(tmp_path.glob("outputs/*/*/artwork/manifest.json")).read_text(encoding="utf-8"))
    assert manifest["validation"]["ok"] and manifest["model"]["generator"] == "hf"
    missing = run_cli("run", "form=七绝", "model=hf", "model.name=nobody/no-such-model-xyz", cwd=tmp_path)
    assert missing.returncode == 1 and "never downloads" in missing.stderr and "Traceback" not in missing.stderr
