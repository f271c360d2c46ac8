import json

import pytest

from synesthesia.components import Conditioning
from synesthesia.errors import CheckpointError
from synesthesia.tokenizer import (
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    control_tokens_for,
    format_conditioned,
    load_tokenizer,
)

CORPUS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.",
    "The moon, the moon! 月落乌啼霜满天",
] * 4
CONTROLS = control_tokens_for(languages=["zh", "en"], forms=["七绝", "sonnet"])

ROUND_TRIP = [
    "举头望明月",
    "Rough winds do shake the darling buds of May,",
    "emoji 🌕🎐👩‍👩‍👧 and flags 🇯🇵",
    "unseen: 鬱龘 ÅΩж ☃ \t\n",
    "literal <eos> and <kw> stay text",
    "",
]


def make(kind):
    if kind == "char":
        return CharTokenizer.train(CORPUS, CONTROLS)
    return BPETokenizer.train(CORPUS, vocab_size=300, control_tokens=CONTROLS)


@pytest.fixture(params=["char", "bpe"])
def tok(request):
    return make(request.param)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_char_tokenizer_is_one_token_per_known_char_and_bytes_otherwise():
    tok = make("char")
    assert len(tok.encode("明月光")) == 3
    # 鬱 was never seen: three UTF-8 bytes; 🌕 four.
    assert [tok.id_to_piece(i) for i in tok.encode("鬱")] == ["<0xE9>", "<0xAC>", "<0xB1>"]
    assert len(tok.encode("🌕")) == 4


def test_special_ids_and_pieces(tok):
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.id_to_piece(tok.eos_id) == "<eos>"
    assert tok.token_id("<form:七绝>") is not None and tok.token_id("<form:limerick>") is None
    assert set(tok.languages) == {"zh", "en"} and set(tok.forms) == {"七绝", "sonnet"}
    # decode drops special and control tokens
    ids = [tok.bos_id, tok.token_id("<lang:zh>")] + tok.encode("月") + [tok.eos_id]
    assert tok.decode(ids) == "月"


def test_encode_conditioned(tok):
    cond = Conditioning(form="七绝", keywords=["秋", "月", "雁"], language="zh", prefix="床前")
    ids = tok.encode_conditioned(cond)
    expected = (
        [tok.bos_id, tok.token_id("<lang:zh>"), tok.token_id("<form:七绝>"), tok.token_id("<kw>")]
        + tok.encode("秋 月 雁")
        + [tok.token_id("</kw>"), tok.token_id("<sep>")]
        + tok.encode("床前")
    )
    assert ids == expected
    assert format_conditioned(cond) == "<bos><lang:zh><form:七绝><kw>秋 月 雁</kw><sep>床前"


def test_encode_conditioned_leaves_out_unknown_controls(tok):
    ids = tok.encode_conditioned(Conditioning(form="limerick", language="fr"))
    assert ids == [tok.bos_id, tok.token_id("<sep>")]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_round_trip(tmp_path, kind):
    tok = make(kind)
    path = tok.save(tmp_path)
    assert path.name == "tokenizer.json"
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == kind
    again = load_tokenizer(tmp_path)
    assert type(again) is type(tok)
    assert again.vocab_size == tok.vocab_size
    for text in ROUND_TRIP:
        assert again.encode(text) == tok.encode(text)
    cond = Conditioning(form="sonnet", language="en", keywords=["rose"])
    assert again.encode_conditioned(cond) == tok.encode_conditioned(cond)
    assert [again.id_to_piece(i) for i in range(tok.vocab_size)] == [
        tok.id_to_piece(i) for i in range(tok.vocab_size)
    ]


def test_char_training_is_deterministic():
    assert make("char").chars == make("char").chars


def test_bpe_pieces_are_readable():
    tok = make("bpe")
    pieces = [tok.id_to_piece(i) for i in tok.encode("the moon")]
    assert "".join(pieces) == "the moon"


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="tokenizer.json.*unreadable"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"type": "wordpiece"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="unknown tokenizer type"):
        load_tokenizer(tmp_path)
