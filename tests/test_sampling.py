"""Sampling: greedy and sampled decoding, the filters, seeds, stop strings, streaming, EOS per candidate,
the sliding context window and plugin constraints (logits processors), on a tiny model trained here."""

from __future__ import annotations

import pytest
import torch

from synesthesia.components import SamplingSettings
from synesthesia.errors import ConfigError, PluginError, SynesthesiaError
from synesthesia.model import GPT, GPTConfig
from synesthesia.sampling import SYNC_EVERY, TextSampler, apply_repetition_penalty, generate_ids, pick_tokens

TEXT = (
    "The quiet river keeps the moon;\n"
    "the reeds lean low and hum a tune.\n"
    "Autumn geese cross the cold sky, far.\n"
)


class TinyTokenizer:
    """Characters of TEXT plus <bos>/<eos>; decode drops the special tokens, like the real ones."""

    def __init__(self, text: str):
        self.pieces = ["<bos>", "<eos>"] + sorted(set(text))
        self.bos_id, self.eos_id = 0, 1
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.vocab_size = len(self.pieces)

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.pieces[int(i)] for i in ids if int(i) > 1)


TOKENIZER = TinyTokenizer(TEXT)


@pytest.fixture(scope="module")
def trained_model() -> GPT:
    """Learns <bos> TEXT <eos> by heart, so greedy decoding is predictable."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=64))
    optimizer = model.configure_optimizers(weight_decay=0.0, learning_rate=3e-3, betas=(0.9, 0.99))
    data = torch.tensor([TOKENIZER.bos_id] + TOKENIZER.encode(TEXT) + [TOKENIZER.eos_id])
    x, y = data[:-1].unsqueeze(0), data[1:].unsqueeze(0)
    for _ in range(250):
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    return model.eval()


@pytest.fixture(scope="module")
def random_model() -> GPT:
    """Untrained: a nearly flat next-token distribution, so sampled texts vary with the seed."""
    torch.manual_seed(1)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=32, n_layer=2, n_head=2,
                         n_embd=32)).eval()


def prompt(text: str = "") -> list[int]:
    return [TOKENIZER.bos_id] + TOKENIZER.encode(text)


GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=200)
SAMPLED = SamplingSettings(temperature=1.0, top_k=None, top_p=None, max_new_tokens=40, seed=7)


def test_greedy_recites_the_training_text_and_stops_at_eos(trained_model):
    sampler = TextSampler(trained_model, TOKENIZER)
    assert sampler.generate(prompt("The"), GREEDY) == [TEXT[3:]]
    assert sampler.generate([], GREEDY) == [TEXT]  # an empty prompt starts from <bos>


@pytest.mark.parametrize("filters", [
    dict(top_k=1),
    dict(top_k=None, top_p=1e-6),
    dict(top_k=None, top_p=None, min_p=1.0),
])
def test_filters_that_keep_one_token_equal_greedy(trained_model, filters):
    sampler = TextSampler(trained_model, TOKENIZER)
    settings = SamplingSettings(temperature=1.5, max_new_tokens=60, seed=3, **filters)
    greedy = sampler.generate(prompt("the reeds"), SamplingSettings(temperature=0.0, max_new_tokens=60))
    assert sampler.generate(prompt("the reeds"), settings, n=2) == greedy * 2


def draw(logits: list[float], settings: SamplingSettings, draws: int = 3000) -> set[int]:
    """Which token ids pick_tokens ever chooses for these logits."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.tensor(logits).log().expand(draws, -1).clone()  # given as probabilities
    return set(pick_tokens(rows, settings, generator).tolist())


PROBS = [0.5, 0.3, 0.15, 0.05]


def test_top_k_keeps_the_k_best():
    assert draw(PROBS, SamplingSettings(temperature=1.0, top_k=2, top_p=None)) == {0, 1}
    assert draw(PROBS, SamplingSettings(temperature=1.0, top_k=None, top_p=None)) == {0, 1, 2, 3}


def test_top_p_is_applied_within_the_top_k():
    # Over the whole vocabulary 0.5 + 0.3 = 0.8 < 0.83, so token 2 is kept; renormalised over the top 3,
    # 0.5 + 0.3 is 0.84 of the mass, so token 2 is dropped.
    assert draw(PROBS, SamplingSettings(temperature=1.0, top_k=None, top_p=0.83)) == {0, 1, 2}
    assert draw(PROBS, SamplingSettings(temperature=1.0, top_k=3, top_p=0.83)) == {0, 1}


def test_top_p_without_top_k_widens_past_the_first_candidates():
    # Nearly flat over 1000 tokens: the nucleus needs about 500 of them, more than the first 64 looked at.
    logits = -0.001 * torch.arange(1000, dtype=torch.float32)
    probs = logits.softmax(-1)
    nucleus = int(((probs.cumsum(-1) - probs) < 0.5).sum())
    generator = torch.Generator().manual_seed(0)
    chosen = pick_tokens(logits.expand(4000, -1).clone(), SamplingSettings(temperature=1.0, top_k=None,
                                                                           top_p=0.5), generator)
    assert int(chosen.max()) < nucleus
    assert len(set(chosen.tolist())) > 300


def test_min_p_drops_tokens_far_below_the_best():
    assert draw(PROBS, SamplingSettings(temperature=1.0, top_k=None, top_p=None, min_p=0.2)) == {0, 1, 2}


def test_repetition_penalty_scales_seen_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[0, 1, 1]])
    penalised = apply_repetition_penalty(logits.clone(), seen, 2.0)
    assert penalised.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert torch.equal(apply_repetition_penalty(logits.clone(), seen, 1.0), logits)


def test_repetition_penalty_changes_greedy_text(trained_model):
    sampler = TextSampler(trained_model, TOKENIZER)
    settings = SamplingSettings(temperature=0.0, max_new_tokens=30, repetition_penalty=50.0)
    text = sampler.generate(prompt("The quiet"), settings)[0]
    assert text != TEXT[9:39]
    assert text[0] != "e"  # the memorised next character was already in the prompt


def test_same_seed_same_text_and_different_seed_different_text(random_model):
    sampler = TextSampler(random_model, TOKENIZER)
    first = sampler.generate(prompt("the"), SAMPLED, n=3)
    torch.manual_seed(1234)  # the global RNG must not matter
    again = sampler.generate(prompt("the"), SAMPLED, n=3)
    other = sampler.generate(prompt("the"), SamplingSettings(**{**SAMPLED.__dict__, "seed": 8}), n=3)
    assert first == again
    assert other != first
    assert len(set(first)) == 3  # the candidates of one batch differ from each other


def test_a_processor_can_force_a_line_break_after_every_five_tokens(random_model):
    newline = TOKENIZER.ids["\n"]

    def five_per_line(generated, logits):
        for row in range(generated.size(0)):
            since_break = 0
            for token in reversed(generated[row].tolist()):
                if token == newline:
                    break
                since_break += 1
            if since_break == 5:
                forced = torch.full_like(logits[row], float("-inf"))
                forced[newline] = 0.0
                logits[row] = forced
            else:
                logits[row, newline] = float("-inf")
                logits[row, :2] = float("-inf")  # no <bos>/<eos> either: every line gets its 5 tokens
        return logits

    sampler = TextSampler(random_model, TOKENIZER)
    texts = sampler.generate(prompt(), SamplingSettings(temperature=1.0, top_k=None, top_p=None,
                                                        max_new_tokens=36, seed=2),
                             n=3, logits_processors=[five_per_line])
    for text in texts:
        lines = text.split("\n")
        assert len(lines) == 7 and lines[-1] == ""  # 6 lines of 5, each closed by the forced break
        assert all(len(line) == 5 for line in lines[:-1])


def test_a_processor_can_restrict_a_position_to_a_token_set(trained_model):
    rhyme = {TOKENIZER.ids[c] for c in "kmv"}

    def fourth_token_rhymes(generated, logits):
        if generated.size(1) == 3:
            banned = torch.ones(logits.size(-1), dtype=torch.bool)
            banned[list(rhyme)] = False
            logits[:, banned] = float("-inf")
        return logits

    sampler = TextSampler(trained_model, TOKENIZER)
    settings = SamplingSettings(temperature=0.0, max_new_tokens=8)
    text = sampler.generate(prompt("The"), settings, logits_processors=[fourth_token_rhymes])[0]
    plain = sampler.generate(prompt("The"), settings)[0]
    assert plain[3] not in "kmv"  # the constraint really changes something
    assert text[:3] == plain[:3] and text[3] in "kmv"


def test_a_processor_that_forbids_everything_raises_a_clear_error(random_model):
    def forbid_all(generated, logits):
        return torch.full_like(logits, float("-inf"))

    sampler = TextSampler(random_model, TOKENIZER)
    with pytest.raises(SynesthesiaError, match="left no possible token"):
        sampler.generate(prompt(), SAMPLED, logits_processors=[forbid_all])


def test_a_processor_returning_the_wrong_shape_is_a_plugin_error(random_model):
    sampler = TextSampler(random_model, TOKENIZER)
    with pytest.raises(PluginError, match="shape"):
        sampler.generate(prompt(), SAMPLED, logits_processors=[lambda generated, logits: logits[:, :3]])


def test_eos_ends_each_candidate_on_its_own(random_model):
    eos = TOKENIZER.eos_id

    def end_rows_early(generated, logits):
        for row, length in ((0, 2), (1, 5)):
            if generated.size(1) == length:
                logits[row] = float("-inf")
                logits[row, eos] = 0.0
            else:
                logits[row, eos] = float("-inf")
        logits[2:, eos] = float("-inf")
        return logits

    sampler = TextSampler(random_model, TOKENIZER)
    settings = SamplingSettings(temperature=1.0, top_k=50, repetition_penalty=1.0, max_new_tokens=12, seed=4)
    texts = sampler.generate(prompt(), settings,
                             n=3, logits_processors=[end_rows_early])
    assert [len(t) for t in texts] == [2, 5, 12]


def test_stop_strings_cut_the_text_before_the_stop(trained_model):
    sampler = TextSampler(trained_model, TOKENIZER)
    settings = SamplingSettings(temperature=0.0, max_new_tokens=200, stop=["moon", "quiet"])
    assert sampler.generate(prompt("The"), settings, n=2) == [" "] * 2  # earliest stop wins
    settings = SamplingSettings(temperature=0.0, max_new_tokens=200, stop=["moon", "geese"])
    assert sampler.generate(prompt("The"), settings) == [" quiet river keeps the "]


@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=0.0, max_new_tokens=200, stop=["hum a t"]),  # partial matches held back
    SamplingSettings(temperature=0.0, max_new_tokens=200),  # runs to <eos>
    SamplingSettings(temperature=1.0, top_k=5, top_p=0.9, max_new_tokens=50, seed=11, stop=["\n\n"]),
])
def test_streamed_pieces_join_to_the_generated_text(trained_model, settings):
    sampler = TextSampler(trained_model, TOKENIZER)
    pieces = list(sampler.stream(prompt("The"), settings))
    assert len(pieces) > 3 and all(pieces)
    assert "".join(pieces) == sampler.generate(prompt("The"), settings)[0]


@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=0.0, max_new_tokens=200, stop=["moon", "geese"]),  # a stop string mid-block
    SamplingSettings(temperature=0.0, max_new_tokens=200),  # runs to <eos>
    SamplingSettings(temperature=1.0, top_k=5, top_p=0.9, max_new_tokens=50, seed=11, stop=["\n\n"]),
])
def test_tokens_taken_to_the_host_in_blocks_give_the_same_texts(trained_model, settings):
    """What an accelerator does (one copy to the host per SYNC_EVERY steps), run on the CPU: the same
    texts, and streamed pieces that still join to them, in fewer and longer pieces."""
    every_step = TextSampler(trained_model, TOKENIZER)
    blocks = TextSampler(trained_model, TOKENIZER)
    assert every_step.host_every == 1
    blocks.host_every = SYNC_EVERY
    texts = every_step.generate(prompt("The"), settings, n=3)
    assert blocks.generate(prompt("The"), settings, n=3) == texts
    pieces, block_pieces = (list(s.stream(prompt("The"), settings)) for s in (every_step, blocks))
    assert "".join(block_pieces) == "".join(pieces) == texts[0]
    assert 1 <= len(block_pieces) < len(pieces)


def test_context_past_block_size_slides_the_window(random_model):
    """Greedy tokens across two slides equal a reference that re-runs the same windows uncached."""
    capacity = random_model.config.block_size  # 32
    keep = capacity - capacity // 4
    start = prompt("the reeds")
    settings = SamplingSettings(temperature=0.0, max_new_tokens=70)
    produced = torch.stack(list(generate_ids(random_model, start, settings))).flatten().tolist()
    assert len(produced) == 70

    history, window_start, expected = list(start), 0, []
    with torch.no_grad():
        for _ in range(70):
            if len(history) - window_start > capacity:
                window_start = len(history) - keep
            logits, _ = random_model(torch.tensor([history[window_start:]]))
            expected.append(int(logits[0, -1].argmax()))
            history.append(expected[-1])
    assert produced == expected


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_low_precision_sampler_writes_the_same_memorised_text(trained_model, weights):
    sampler = TextSampler(trained_model, TOKENIZER, dtype=weights)
    assert sampler.generate(prompt("The"), GREEDY) == [TEXT[3:]]


@pytest.mark.parametrize("bad, field", [
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_k=-3), "top_k"),
    (dict(min_p=2.0), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(stop=[""]), "stop"),
])
def test_bad_settings_name_the_field(random_model, bad, field):
    sampler = TextSampler(random_model, TOKENIZER)
    with pytest.raises(ConfigError, match=field):
        sampler.generate(prompt(), SamplingSettings(**bad))


def test_prompt_ids_outside_the_model_vocabulary_fail_clearly(random_model):
    sampler = TextSampler(random_model, TOKENIZER)
    with pytest.raises(SynesthesiaError, match="does not match the model"):
        sampler.generate([0, TOKENIZER.vocab_size + 5], SAMPLED)
