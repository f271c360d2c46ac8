"""The core transformer: it learns, its fast decoding path agrees with the plain forward pass, and bad
configs or over-long inputs fail clearly."""

from __future__ import annotations

import pytest
import torch

from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.model import GPT, GPTConfig, InferenceModel

TEXT = (
    "The quiet river keeps the moon;\n"
    "the reeds lean low and hum a tune.\n"
    "Autumn geese cross the cold sky, far.\n"
)
CHARS = sorted(set(TEXT))
STOI = {c: i for i, c in enumerate(CHARS)}


def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


def decode(ids) -> str:
    return "".join(CHARS[int(i)] for i in ids)


def train_tiny(pos: str, steps: int = 250, seed: int = 0, bias: bool = True) -> tuple[GPT, float]:
    """Fit a two-layer model to TEXT; return it and the final training loss."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=len(CHARS), block_size=128, n_layer=2, n_head=2, n_embd=64,
                       dropout=0.0, bias=bias, pos=pos)
    model = GPT(config)
    optimizer = model.configure_optimizers(weight_decay=0.0, learning_rate=3e-3, betas=(0.9, 0.99))
    data = torch.tensor(encode(TEXT))
    x, y = data[:-1].unsqueeze(0), data[1:].unsqueeze(0)  # the whole text as one sequence
    loss = None
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval(), loss.item()


# The shipped models have no biases (bias=False); GPT-2 layouts (and exported HF models) have them.
@pytest.fixture(scope="module", params=[("learned", True), ("rope", True), ("learned", False), ("rope", False)],
                ids=["learned-bias", "rope-bias", "learned-nobias", "rope-nobias"])
def trained(request):
    pos, bias = request.param
    return train_tiny(pos, bias=bias)


def greedy_uncached(model: GPT, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """The reference: re-run the whole sequence for every new token. prompt [B, T] -> [B, steps]."""
    idx = prompt
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = model(idx)  # [B, 1, V]
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx[:, prompt.size(1):]


def greedy_cached(fast: InferenceModel, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    cache = fast.new_cache(prompt.size(0))
    logits = fast.prefill(prompt, cache)
    out = []
    for _ in range(steps):
        token = logits.argmax(-1)  # [B]
        out.append(token)
        logits = fast.step(token, cache)
    return torch.stack(out, dim=1)


def test_tiny_model_overfits_and_recites_the_text(trained):
    model, loss = trained
    assert loss < 0.05, f"training loss stayed at {loss:.3f}"
    prompt = torch.tensor([encode(TEXT[:4])])
    continuation = greedy_cached(model.prepare_for_inference(), prompt, len(TEXT) - 4)
    assert decode(continuation[0]) == TEXT[4:]


def test_kv_cached_greedy_matches_uncached_batch_1(trained):
    model, _ = trained
    prompt = torch.tensor([encode("the reeds")])
    expected = greedy_uncached(model, prompt, 40)
    assert torch.equal(greedy_cached(model.prepare_for_inference(torch.float32), prompt, 40), expected)


def test_kv_cached_greedy_matches_uncached_batch_of_different_prompts(trained):
    model, _ = trained
    prompts = torch.tensor([encode("Autumn"), encode("the qu"), encode("cold s"), encode("moon;\n")])
    expected = greedy_uncached(model, prompts, 30)
    # The rows must differ, or a batch bug that copies row 0 everywhere would pass.
    assert len({decode(row) for row in expected}) == 4
    assert torch.equal(greedy_cached(model.prepare_for_inference(), prompts, 30), expected)


def test_one_prompt_fans_out_to_every_candidate(trained):
    model, _ = trained
    fast = model.prepare_for_inference()
    prompt = torch.tensor([encode("The quiet")])
    cache = fast.new_cache(3)
    logits = fast.prefill(prompt, cache)  # batch-1 prompt into a batch-3 cache
    assert logits.shape == (3, len(CHARS))
    tokens = torch.tensor([STOI["r"], STOI["k"], STOI["m"]])  # a different next token per candidate
    stepped = fast.step(tokens, cache)
    for row in range(3):
        full = torch.cat([prompt[0], tokens[row:row + 1]]).unsqueeze(0)
        reference, _ = model(full)
        torch.testing.assert_close(stepped[row], reference[0, -1], atol=1e-4, rtol=1e-4)


# Total variation distance per position: mean below 0.03, and no position beyond 0.15 (a rope model
# without biases, sharply fit, reaches ~0.12 at its most ambiguous position; the others stay under 0.06).
@pytest.mark.parametrize("fast_format, max_error", [("bfloat16", 0.03), ("int8", 0.05)])
def test_low_precision_fast_paths_stay_close_to_fp32(trained, fast_format, max_error):
    model, _ = trained
    prompts = torch.tensor([encode("the reeds lean"), encode("Autumn geese c")])
    steps = [STOI[c] for c in "ross the cold"]
    results = {}
    for weights in ("float32", fast_format):
        fast = model.prepare_for_inference(weights)
        cache = fast.new_cache(2)
        logits = [fast.prefill(prompts, cache)]
        for token in steps:
            logits.append(fast.step(torch.tensor([token, token]), cache))
        results[weights] = torch.stack(logits, dim=1)  # [2, 1 + len(steps), V]
    full32, low = results["float32"], results[fast_format]
    assert low.dtype == torch.float32
    assert not torch.equal(low, full32)  # it really ran in lower precision
    scale = full32.abs().max()
    assert (low - full32).abs().max() < max_error * scale
    probs32, probs_low = full32.softmax(-1), low.softmax(-1)
    distance = (probs32 - probs_low).abs().sum(-1)  # total variation distance, per position
    assert distance.mean() < 0.03 and distance.max() < 0.15
    assert (low.argmax(-1) == full32.argmax(-1)).float().mean() > 0.95


def test_attention_maps_are_causal_distributions_matching_the_fast_kernel(trained):
    model, _ = trained
    idx = torch.tensor([encode("the reeds lean low"), encode("Autumn geese cross")])
    maps = model.attention_maps(idx)
    cfg = model.config
    assert len(maps) == cfg.n_layer
    T = idx.size(1)
    for weights in maps:
        assert weights.shape == (2, cfg.n_head, T, T)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, cfg.n_head, T))
        assert torch.all(weights.triu(diagonal=1) == 0)  # nothing attends to the future
    # The explicit-softmax path computes the same block output as scaled_dot_product_attention.
    x = model._embed(idx)
    block = model.transformer.h[0]
    with torch.no_grad():
        explicit, weights = block(x, model._rope(), need_weights=True)
        fused, none = block(x, model._rope())
    assert none is None and weights is not None
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


def test_forward_shapes_and_ignored_targets():
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 50, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 50) and loss is None
    targets = idx.clone()
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, 50)
    masked = targets.clone()
    masked[:, 5:] = -100  # ignored positions must not count
    _, masked_loss = model(idx, masked)
    expected = torch.nn.functional.cross_entropy(logits[:, :5].reshape(-1, 50), targets[:, :5].reshape(-1))
    torch.testing.assert_close(masked_loss, expected)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_optimizer_groups_decay_matrices_only():
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16))
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))  # tied weight once
    assert sum(p.numel() for p in model.parameters()) == model.num_params(non_embedding=False)


def test_from_config_accepts_a_dict_and_rejects_unknown_keys():
    model = GPT.from_config({"vocab_size": 30, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8,
                             "pos": "rope"})
    assert model.config.pos == "rope" and "wpe" not in model.transformer
    with pytest.raises(ConfigError, match="n_layers"):
        GPT.from_config({"vocab_size": 30, "n_layers": 2})


@pytest.mark.parametrize("bad, field", [
    (dict(n_embd=30, n_head=4), "n_head"),
    (dict(pos="alibi"), "pos"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(dropout=1.5), "dropout"),
])
def test_bad_configs_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**bad)


def test_too_long_inputs_fail_clearly():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    with pytest.raises(SynesthesiaError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    fast = model.prepare_for_inference()
    cache = fast.new_cache(1)
    logits = fast.prefill(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(SynesthesiaError, match="KV cache holds 8 positions"):
        fast.step(logits.argmax(-1), cache)
    with pytest.raises(ConfigError, match="dtype"):
        model.prepare_for_inference("float16")


def test_every_weight_of_the_model_is_used_by_the_decoding_path(trained):
    model, _ = trained
    fast = model.prepare_for_inference()
    assert fast.used_weights == set(model.state_dict())
    assert any(name.endswith(".bias") for name in fast.used_weights) == model.config.bias


def test_a_weight_the_decoding_path_does_not_know_fails_loudly():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False))
    model.transformer.h[0].attn.register_parameter("gate", torch.nn.Parameter(torch.ones(8)))
    with pytest.raises(SynesthesiaError, match=r"does not use the weights \['transformer.h.0.attn.gate'\]"):
        model.prepare_for_inference()


@pytest.mark.parametrize("plain_attention", [False, True], ids=["sdpa", "plain attention (CUDA float32)"])
def test_static_step_matches_the_dynamic_one(trained, plain_attention):
    """The fixed-shape step (CUDA graphs, torch.compile): same tokens, logits within rounding, and it
    keeps the device-side position in step with the host's, including after a re-prefill (a slide).
    Also with the plain-matmul attention that float32 on CUDA takes (here forced on the CPU)."""
    model, _ = trained
    prompts = torch.tensor([encode("Autumn"), encode("the qu"), encode("cold s")])
    expected = greedy_uncached(model, prompts, 30)
    static = model.prepare_for_inference(static=True)
    assert static.static and not static.graphs and not static.plain_attention  # CPU: SDPA
    static.plain_attention = plain_attention
    assert torch.equal(greedy_cached(static, prompts, 30), expected)
    dynamic = model.prepare_for_inference()
    caches = {fast: fast.new_cache(3) for fast in (dynamic, static)}
    for _ in range(2):  # the second round re-prefills a used cache
        logits = {fast: fast.prefill(prompts[:, :4], cache) for fast, cache in caches.items()}
        for token in encode("mn ri"):
            tokens = torch.full((3,), token)
            logits = {fast: fast.step(tokens, cache) for fast, cache in caches.items()}
            torch.testing.assert_close(logits[static], logits[dynamic], atol=1e-5, rtol=1e-5)
        assert int(caches[static].pos) == caches[static].length == 4 + 5


def test_the_dynamic_steps_plain_attention_matches_sdpa(trained):
    """The dynamic step's attention for a new position through explicit_attention (what a compiled float32
    step takes; here forced on an eager one): every step's logits within rounding of SDPA's, the same greedy
    tokens, and a prompt still goes through SDPA with its causal mask (its logits bit for bit)."""
    model, _ = trained
    prompts = torch.tensor([encode("Autumn"), encode("the qu"), encode("cold s")])
    sdpa, plain = model.prepare_for_inference(), model.prepare_for_inference()
    assert not sdpa.plain_attention  # eager on the CPU: SDPA
    plain.plain_attention = True
    caches = {fast: fast.new_cache(3) for fast in (sdpa, plain)}
    logits = {fast: fast.prefill(prompts, cache) for fast, cache in caches.items()}
    assert torch.equal(logits[plain], logits[sdpa])
    for token in encode("mn ri"):
        tokens = torch.full((3,), token)
        logits = {fast: fast.step(tokens, cache) for fast, cache in caches.items()}
        torch.testing.assert_close(logits[plain], logits[sdpa], atol=1e-5, rtol=1e-5)
    assert torch.equal(greedy_cached(plain, prompts, 30), greedy_uncached(model, prompts, 30))


def eight_prompts() -> torch.Tensor:
    """Eight different 6-character prompts [8, 6]: a batch that runs on packed weights."""
    words = ["Autumn", "the qu", "cold s", "moon;\n", "reeds ", "geese ", "quiet ", "river "]
    return torch.tensor([encode(word) for word in words])


needs_mkl = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="this torch build has no MKL")


@needs_mkl
def test_packed_weights_give_the_same_logits_bit_for_bit(trained):
    """Eight candidates on a CPU with MKL: the matmul weights are packed for that batch, and every
    step's logits equal the plain matmul's exactly (different prompts and tokens per row, so a row
    mix-up shows)."""
    model, _ = trained
    packed, plain = model.prepare_for_inference(), model.prepare_for_inference(pack=False)
    assert packed.pack and not plain.pack
    prompts = eight_prompts()  # [8, 6]
    caches = {fast: fast.new_cache(8) for fast in (packed, plain)}
    assert packed._packed_rows == 8 and plain._packed_rows == 0
    for fast, cache in caches.items():
        fast.prefill(prompts, cache)
    for token in encode("mn ri"):
        tokens = torch.tensor([token] + [STOI[c] for c in "eoatnsr"])
        logits = {fast: fast.step(tokens, cache) for fast, cache in caches.items()}
        assert torch.equal(logits[packed], logits[plain])
    assert torch.equal(greedy_cached(packed, prompts, 30), greedy_uncached(model, prompts, 30))
    packed.new_cache(2)  # a small batch takes the plain matmul and keeps the last packing
    assert packed._packed_rows == 8


@pytest.mark.slow
def test_the_compiled_step_gives_the_tokens_of_the_trained_model(trained):
    """compile=True on the CPU: the dynamic step through torch.compile (one compile for all positions),
    greedy tokens equal to the uncached model's, for one candidate and for eight (on packed weights where
    this torch has MKL: a graph of its own around the packed matmuls; plain ones elsewhere)."""
    from torch._dynamo.utils import counters

    model, _ = trained
    torch._dynamo.reset()  # every InferenceModel's step is one code object: past 8 graphs dynamo runs it eagerly
    fast = model.prepare_for_inference(compile=True)
    assert fast.compile and not fast.static and fast.plain_attention
    assert fast.compile_packed == fast.pack
    prompts = eight_prompts()  # [8, 6]
    for rows in (1, 8):
        graphs = counters["stats"]["unique_graphs"]
        assert torch.equal(greedy_cached(fast, prompts[:rows], 30), greedy_uncached(model, prompts[:rows], 30))
    assert fast._packed_rows == (8 if fast.pack else 0)
    assert counters["stats"]["unique_graphs"] - graphs == 1  # batch 8 compiled (not eager on packed weights)
    if fast.pack:  # where inductor cannot take the packed matmuls, the packed batch steps eagerly
        fast.compile_packed, graphs = False, counters["stats"]["unique_graphs"]
        assert torch.equal(greedy_cached(fast, prompts, 30), greedy_uncached(model, prompts, 30))
        assert counters["stats"]["unique_graphs"] == graphs


def test_packing_needs_float32_on_the_dynamic_cpu_step(trained):
    model, _ = trained
    for options in ({"dtype": "bfloat16"}, {"static": True}):
        with pytest.raises(ConfigError, match="pack=True needs float32"):
            model.prepare_for_inference(pack=True, **options)
    assert not model.prepare_for_inference("int8").pack


def test_cuda_graphs_need_a_cuda_device():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        model.prepare_for_inference(graphs=True)
