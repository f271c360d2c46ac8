"""Constrained decoding: random logits decoded under the form's processors must come out in form."""

from __future__ import annotations

import pytest
import torch

from synesthesia.components import FormRequest
from synesthesia.tokenizer import CharTokenizer
from synesthesia_poetry import chinese
from synesthesia_poetry.constraints import (
    ClassicalVerseProcessor,
    LineCountProcessor,
    SyllableLineProcessor,
    chinese_vocab,
    english_lexicon,
)
from synesthesia_poetry.forms import all_forms

FORMS = {f.name: f for f in all_forms()}


def small_chinese_vocab() -> list[str]:
    """A few characters from every 平水韵 group (both scripts), some Latin and the punctuation."""
    table = chinese.rhyme_table()
    chars: list[str] = []
    for group in sorted(table.group_chars):
        chars += sorted(ch for ch in table.group_chars[group] if chinese.is_han(ch))[:12]
    # ...and the characters the tests name.
    chars += list("春風秋月東月落烏啼霜滿天江楓漁火對愁眠夜半鐘聲到客船")
    # Characters outside the table (tone from pypinyin, no rhyme group) must never end a rhyming line.
    outside = [ch for ch in "氢氦氖氩氪氙嫦锂铍硼钠镁铝硅" if not table.groups.get(ch)]
    assert len(outside) >= 8
    chars += outside
    return list(dict.fromkeys(chars)) + list("，。！？\n abcxyz")


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer(small_chinese_vocab())


def decode_randomly(tokenizer, processors, batch=6, steps=120, seed=0, bias=None):
    """Sample from random logits under the processors, like a model that knows nothing."""
    gen = torch.Generator().manual_seed(seed)
    generated = torch.zeros(batch, 0, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool)
    for _ in range(steps):
        logits = torch.randn(batch, tokenizer.vocab_size, generator=gen) * 3
        if bias is not None:
            logits += bias
        for processor in processors:
            logits = processor(generated, logits)
        assert torch.isfinite(logits).any(dim=1).all(), "a processor left a row without any allowed token"
        probs = torch.softmax(logits, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        nxt = torch.where(finished, torch.full_like(nxt, tokenizer.eos_id), nxt)
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        finished |= nxt == tokenizer.eos_id
        if finished.all():
            break
    assert finished.all(), "the processors never ended the poem"
    return [tokenizer.decode(row.tolist()) for row in generated]


@pytest.mark.parametrize("form,n_lines,n_chars", [("五绝", 4, 5), ("七绝", 4, 7), ("五律", 8, 5), ("七律", 8, 7)])
def test_random_logits_come_out_in_form(tokenizer, form, n_lines, n_chars):
    processors = FORMS[form].logits_processors(tokenizer, FormRequest(theme="秋月"))
    texts = decode_randomly(tokenizer, processors, batch=10, seed=n_lines * 10 + n_chars)
    patterns_seen = set()
    for text in texts:
        # Punctuation placed by the form: "，" after odd lines, "。\n" after even ones, nothing after the end.
        couplets = text.split("\n")
        assert len(couplets) == n_lines // 2
        for couplet in couplets:
            assert len(couplet) == 2 * n_chars + 2 and couplet[n_chars] == "，" and couplet[-1] == "。"
        lines = chinese.split_lines(text)
        assert len(lines) == n_lines and all(len(line) == n_chars for line in lines)
        pattern, accuracy = chinese.best_pattern(lines, n_lines, n_chars)
        assert accuracy == 1.0, (text, pattern.name)
        patterns_seen.add(pattern.name)
        rhyming = [line[-1] for i, line in enumerate(lines) if pattern.rhymes(i)]
        shared = chinese.shared_rhyme_groups(rhyming)
        assert any(chinese.rhyme_table().group_tone[g] == "平" for g in shared), text
        assert len(set(rhyming)) == len(rhyming), f"a rhyme character was reused: {text}"
        verdict = FORMS[form].validate(text)
        assert verdict.ok and verdict.score == pytest.approx(1.0), verdict.problems
    # The pattern is chosen per candidate from what the first line happened to be.
    assert len(patterns_seen) >= 2


def test_without_processors_random_text_is_not_in_form(tokenizer):
    eos_never = torch.zeros(tokenizer.vocab_size)
    eos_never[tokenizer.eos_id] = float("-inf")

    class StopAfter:  # ends each candidate after 32 tokens, so that the loop terminates
        def __call__(self, generated, logits):
            if generated.shape[1] >= 32:
                logits[:] = float("-inf")
                logits[:, tokenizer.eos_id] = 0.0
            return logits

    texts = decode_randomly(tokenizer, [StopAfter()], batch=8, seed=3, bias=eos_never)
    assert not any(FORMS["七绝"].validate(FORMS["七绝"].finalize(t)).ok for t in texts)


def test_fixed_pattern_and_acrostic_heads(tokenizer):
    request = FormRequest(options={"head": "春風秋月", "chars": 7, "pattern": "平起首句入韵"})
    processors = FORMS["藏头诗"].logits_processors(tokenizer, request)
    for text in decode_randomly(tokenizer, processors, batch=4, seed=5):
        lines = chinese.split_lines(text)
        assert "".join(line[0] for line in lines) == "春風秋月"
        pattern = chinese.find_pattern("平起首句入韵", 4, 7)
        assert chinese.tonal_accuracy(lines, pattern) == 1.0
        assert FORMS["藏头诗"].validate(text, request).ok


def test_characters_without_a_rhyme_group_never_end_a_rhyming_line(tokenizer):
    vocab = chinese_vocab(tokenizer)
    favoured = vocab.content & ~vocab.rhymable  # tone known (pypinyin or 仄 only) but no 平 rhyme group
    bias = torch.where(favoured, torch.tensor(8.0), torch.tensor(0.0))
    processors = FORMS["七绝"].logits_processors(tokenizer, FormRequest())
    for text in decode_randomly(tokenizer, processors, batch=6, seed=13, bias=bias):
        lines = chinese.split_lines(text)
        assert chinese.shared_rhyme_groups([lines[1][-1], lines[3][-1]]), text


def test_processor_relaxes_instead_of_leaving_nothing(tokenizer):
    vocab = chinese_vocab(tokenizer)
    # Earlier processors forbade every level-tone character: the 平 positions cannot be obeyed.
    bias = torch.where(vocab.ping, torch.tensor(float("-inf")), torch.tensor(0.0))
    processor = ClassicalVerseProcessor(tokenizer, 4, 5)
    texts = decode_randomly(tokenizer, [processor], batch=3, seed=7, bias=bias)
    assert processor.relaxed > 0
    for text in texts:
        lines = chinese.split_lines(text)
        assert len(lines) == 4 and all(len(line) == 5 for line in lines)


def test_masks_are_built_once_per_tokenizer(tokenizer):
    assert chinese_vocab(tokenizer) is chinese_vocab(tokenizer)
    vocab = chinese_vocab(tokenizer)
    assert vocab.content.shape == (tokenizer.vocab_size,) and vocab.content.dtype == torch.bool
    assert not vocab.content[tokenizer.token_id("a")] and not vocab.content[tokenizer.eos_id]
    assert vocab.ping[tokenizer.token_id("東")] and not vocab.ze[tokenizer.token_id("東")]


def test_regenerating_from_a_prefix_continues_the_pattern(tokenizer):
    # The first two lines of 枫桥夜泊 (traditional) are given; only line 3 is written, then <eos>.
    prefix = "月落烏啼霜滿天，江楓漁火對愁眠。\n"
    processor = ClassicalVerseProcessor(tokenizer, 4, 7, prefix=prefix, stop_after_line=2,
                                        pattern="仄起首句入韵", rhyme_groups=["下平聲一先"])
    for text in decode_randomly(tokenizer, [processor], batch=4, seed=11):
        assert len(text) == 8 and text.endswith("。")
        line = text[:7]
        assert chinese.tonal_accuracy(["月落烏啼霜滿天", "江楓漁火對愁眠", line, "夜半鐘聲到客船"],
                                      chinese.find_pattern("仄起首句入韵", 4, 7)) == 1.0


def test_line_count_processor_gives_exact_line_counts():
    tokenizer = CharTokenizer(list("abcdefghij \n"))
    newline = tokenizer.token_id("\n")
    bias = torch.zeros(tokenizer.vocab_size)
    bias[newline] = 2.0  # many (blank) line breaks, and <eos> as likely as anything
    bias[tokenizer.eos_id] = 3.0
    texts = decode_randomly(tokenizer, [LineCountProcessor(tokenizer, 3)], batch=8, steps=400, seed=2, bias=bias)
    for text in texts:
        assert len([line for line in text.split("\n") if line.strip()]) == 3, repr(text)


def test_line_count_processor_ends_overlong_lines():
    tokenizer = CharTokenizer(list("abcdefghij \n"))
    bias = torch.zeros(tokenizer.vocab_size)
    bias[tokenizer.token_id("\n")] = -20.0  # the model would hardly ever end a line by itself
    processor = LineCountProcessor(tokenizer, 3, max_line_chars=12)
    texts = decode_randomly(tokenizer, [processor], batch=8, steps=3 * 13 + 2, seed=4, bias=bias)
    for text in texts:
        lines = [line for line in text.split("\n") if line.strip()]
        assert len(lines) == 3 and all(len(line) <= 12 for line in lines), repr(text)


def test_char_level_haiku_has_exact_syllables():
    from synesthesia_poetry import english

    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz ,.'\n"))
    bias = torch.zeros(tokenizer.vocab_size)
    bias[tokenizer.token_id(" ")] = 1.5  # word-like text
    for vowel in "aeiou":
        bias[tokenizer.token_id(vowel)] = 1.0
    request = FormRequest(theme="winter sea")
    processors = FORMS["haiku"].logits_processors(tokenizer, request)
    texts = decode_randomly(tokenizer, processors, batch=8, steps=200, seed=1, bias=bias)
    lexicon = english_lexicon()
    for text in texts:
        lines = [line for line in text.split("\n") if line.strip()]
        assert [english.line_syllables(line) for line in lines] == [5, 7, 5], repr(text)
        assert FORMS["haiku"].validate(FORMS["haiku"].finalize(text)).ok
        assert all(word in lexicon.syllables for word in english.words(text)), repr(text)
    # The same random text without the processor is not a haiku.
    eos_late = bias.clone()
    eos_late[tokenizer.eos_id] = -3.0
    free = decode_randomly(tokenizer, [LineCountProcessor(tokenizer, 3, max_line_chars=40)], batch=8, steps=200,
                           seed=1, bias=eos_late)
    assert sum(FORMS["haiku"].validate(t).ok for t in free) <= 1


def test_english_verse_spells_dictionary_words_and_writes_no_speaker_cues():
    """A drama-trained model opens with ``HASTINGS:``; random logits pushed towards capitals and colons
    stand in for it. Under the limerick's processors every word is a lexicon word, capitals start words
    only, and no colon is written; without the words processor the same logits give neither."""
    from synesthesia_poetry import english

    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyzHSAGTIN :,.'\n"))
    bias = torch.zeros(tokenizer.vocab_size)
    bias[tokenizer.token_id(" ")] = 1.5
    for piece in "HSAGTIN:":
        bias[tokenizer.token_id(piece)] = 2.0
    bias[tokenizer.eos_id] = -3.0
    processors = FORMS["limerick"].logits_processors(tokenizer, FormRequest(theme="sea", keywords=["sea"]))
    assert any(isinstance(p, SyllableLineProcessor) for p in processors)
    texts = decode_randomly(tokenizer, processors, batch=6, steps=400, seed=3, bias=bias)
    lexicon = english_lexicon()
    for text in texts:
        lines = [line for line in text.split("\n") if line.strip()]
        assert len(lines) == 5, repr(text)
        # Planned rhyme words end the lines: the whole AABBA scheme holds, and the theme word is there.
        assert english.scheme_accuracy(lines, "AABBA") == 1.0, repr(text)
        assert "sea" in english.words(text), repr(text)
        assert ":" not in text, repr(text)
        raw_words = english.WORD.findall(text)
        assert len(raw_words) >= 5 and all(w.lower() in lexicon.syllables for w in raw_words), repr(text)
        assert not any(ch.isupper() for w in raw_words for ch in w[1:]), repr(text)
    free = decode_randomly(tokenizer, [LineCountProcessor(tokenizer, 5, max_line_chars=56)], batch=6, steps=400,
                           seed=3, bias=bias)
    assert all(":" in t or any(w.lower() not in lexicon.syllables for w in english.WORD.findall(t)) for t in free)


def test_english_lexicon_keeps_common_words_and_drops_surnames_and_letter_names():
    lexicon = english_lexicon()
    for word, count in (("thee", 1), ("winter", 2), ("sea", 1), ("beautiful", 3), ("don't", 1), ("i", 1)):
        assert lexicon.syllables[word] == count
    for junk in ("hastert", "th", "t", "mr"):
        assert junk not in lexicon.syllables
    assert lexicon.fewest["beau"] == 1  # "beau" itself; "beautiful" has three
    assert lexicon.letter_fits("Win", "t")
    assert not lexicon.letter_fits("WIN", "T")
    assert not lexicon.letter_fits("qz", "x")
