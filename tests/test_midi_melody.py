"""Prosody and melody: the words decide the rhythm, the constraints hold, the seed matters."""

from __future__ import annotations

import pytest

from synesthesia.errors import ConfigError
from synesthesia_midi import melody as melody_mod
from synesthesia_midi.prosody import analyze, caesura_position, split_word, word_stresses

DENGGUANQUE = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"
QINGMING = "清明时节雨纷纷\n路上行人欲断魂\n借问酒家何处有\n牧童遥指杏花村"
SONNET = (
    "Shall I compare thee to a summer's day?\n"
    "Thou art more lovely and more temperate:\n"
    "Rough winds do shake the darling buds of May,\n"
    "And summer's lease hath all too short a date;"
)


def test_chinese_lines_caesura_and_classical_tones():
    prosody = analyze(DENGGUANQUE)
    assert prosody.language == "zh"
    assert ["".join(s.lyric for s in line) for line in prosody.lines] == [
        "白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    assert [s.caesura_after for s in prosody.lines[0]] == [False, True, False, False, False]  # 2 + 3
    seven = analyze(QINGMING)
    assert [i for i, s in enumerate(seven.lines[0]) if s.caesura_after] == [3]  # 4 + 3
    assert caesura_position(5) == 1 and caesura_position(7) == 3
    by_char = {s.lyric: s for s in prosody.syllables}
    # 白, 日, 入 and 目 were entering-tone (仄) syllables; modern Mandarin reads 白 with a rising tone 2.
    assert by_char["白"].tone == 2 and by_char["白"].level == "ru"
    assert by_char["入"].level == "ru" and by_char["依"].level == "ping" and by_char["流"].level == "ping"
    assert by_char["尽"].tone == 4 or by_char["尽"].tone == 3
    assert prosody.lines[-1][-1].stanza_end and not prosody.lines[0][-1].stanza_end


def test_english_stress_from_cmu_with_function_words_demoted():
    assert word_stresses("compare") == (False, True)
    assert word_stresses("summer") == (True, False)
    assert word_stresses("the") == (False,) and word_stresses("winds") == (True,)
    prosody = analyze(SONNET + "\n\nRough winds, and May")
    assert prosody.language == "en" and prosody.stanza_sizes == [4, 1]
    first = prosody.lines[0]
    assert "".join(s.lyric for s in first).replace("-", "") == "ShallIcomparetheetoasummer'sday"
    assert [s.lyric for s in first[2:4]] == ["com-", "pare"]
    assert [s.stressed for s in first if s.word in ("to", "a")] == [False, False]
    last = prosody.lines[-1]
    assert last[1].caesura_after  # the comma after "winds"
    assert last[-1].stressed  # "May" capitalised inside the line is a name, not the modal verb
    assert split_word("beautiful", 3) == ["beau", "ti", "ful"]
    assert "".join(split_word("temperate", 3)) == "temperate"


@pytest.mark.parametrize("text", [DENGGUANQUE, QINGMING, SONNET])
def test_one_note_per_syllable_in_scale_stressed_on_strong_beats_with_cadences(text):
    prosody = analyze(text)
    melody = melody_mod.compose(prosody, text, seed=5)
    template = melody.template
    notes = melody.notes
    assert len(notes) == len(prosody.syllables)
    assert [n.syllable for n in notes] == prosody.syllables
    assert all((n.pitch - template.tonic_midi) % 12 in template.scale for n in notes)
    assert all(template.tonic_midi - 5 <= n.pitch <= template.tonic_midi + 14 for n in notes)
    stressed = [n for n in notes if n.syllable.stressed]
    assert all(n.onset % template.strong_step == 0 for n in stressed)
    onsets = [n.onset for n in notes]
    assert onsets == sorted(onsets) and all(a.onset + a.duration <= b.onset for a, b in zip(notes, notes[1:]))
    line_ends = [n for n in notes if n.syllable.line_end]
    assert len(line_ends) == len(prosody.lines)
    for n in line_ends:
        degree = (n.pitch - template.tonic_midi) % 12
        assert degree == (0 if n.cadence == "tonic" else 7)
        assert n.duration >= 4  # a long note at every line end
    assert (notes[-1].pitch - template.tonic_midi) % 12 == 0
    if prosody.language == "zh":
        assert template.mode in ("gong", "shang", "zhi", "yu") and len(template.scale) == 5
        caesura_notes = [n for n in notes if n.syllable.caesura_after]
        assert all(n.duration >= 4 for n in caesura_notes)
        # Long notes inside a line take the key's pillars; other strong beats the bar's pentatonic anchors.
        for n in notes:
            degree = (n.pitch - template.tonic_midi) % 12
            if n.cadence:
                continue
            if n.duration >= melody_mod.PILLAR_MIN_UNITS:
                assert degree in template.pillars
            elif n.strong:
                assert degree in melody.chords[n.onset // template.bar_units][1]


def test_mandarin_tones_steer_the_melodic_direction():
    prosody = analyze(QINGMING)
    melody = melody_mod.compose(prosody, QINGMING, seed=2)
    agree = total = 0
    for a, b in zip(melody.notes, melody.notes[1:]):
        want = melody_mod.expected_direction(a.syllable, b.syllable)
        if want:
            total += 1
            agree += (b.pitch - a.pitch) * want > 0
    assert total >= 10 and agree / total >= 0.8


def test_seed_key_mode_tempo_and_melisma_options():
    prosody = analyze(SONNET)
    a = melody_mod.compose(prosody, SONNET, seed=1)
    b = melody_mod.compose(prosody, SONNET, seed=1)
    assert [n.pitch for n in a.notes] == [n.pitch for n in b.notes]
    others = {tuple(n.pitch for n in melody_mod.compose(prosody, SONNET, seed=s).notes) for s in range(2, 6)}
    assert len(others) > 1
    fixed = melody_mod.compose(prosody, SONNET, seed=1, key="Bb", mode="minor", tempo=70)
    assert fixed.template.key_name == "Bbm" and fixed.template.tempo_bpm == 70
    assert fixed.template.tonic_pc == 10
    sung = melody_mod.compose(prosody, SONNET, seed=1, melisma=True)
    assert len(sung.notes) > len(prosody.syllables)
    assert [n.syllable for n in sung.notes if n.syllable is not None] == prosody.syllables
    with pytest.raises(ConfigError, match="key"):
        melody_mod.compose(prosody, SONNET, key="H")
    with pytest.raises(ConfigError, match="mode"):
        melody_mod.compose(prosody, SONNET, mode="lydian")
    with pytest.raises(ConfigError, match="text"):
        melody_mod.compose(analyze("..."), "...")


def test_corpus_statistics_were_learned_from_both_families():
    stats = melody_mod.load_stats()
    for family in ("zh", "west"):
        data = stats["families"][family]
        assert data["tunes"] > 1000 and data["notes"] > 50000
        steps = data["interval_bigram"]["start"]
        # Folk melodies move mostly by step: small intervals dominate large leaps.
        small = sum(c for i, c in steps.items() if abs(int(i)) <= 2)
        large = sum(c for i, c in steps.items() if abs(int(i)) >= 8)
        assert small > 3 * large
    # Han songs are pentatonic: the tritone above the final is rare compared with the fifth.
    zh_degrees = stats["families"]["zh"]["degree_by_strength"]["strong"]
    assert zh_degrees.get("7", 0) > 10 * zh_degrees.get("6", 0)


def test_melody_gpt_prefers_folk_like_lines_and_steers_the_search():
    from synesthesia.errors import CheckpointError
    from synesthesia_midi import melody_model

    if not (melody_model.MODEL_DIR / "model.safetensors").exists():
        pytest.skip("the melody GPT is not trained (python -m synesthesia_midi.melody_model)")
    scorer = melody_model.GPTPitchScorer("zh")
    # A pentatonic line moving by step, against the same notes scrambled into leaps.
    stepwise = [(0, True), (2, False), (4, True), (7, False), (9, True), (7, False), (4, True), (2, False)]
    leaping = [(0, True), (9, False), (2, True), (11, False), (-5, True), (6, False), (1, True), (10, False)]

    def total_logprob(notes):
        total = 0.0
        for k, (relative, strong) in enumerate(notes):
            lp = scorer.logprobs([notes[:k]], strong)[0]
            total += float(lp[melody_model.pitch_token(relative)])
        return total

    assert total_logprob(stepwise) > total_logprob(leaping) + 10
    prosody = analyze(QINGMING)
    melody = melody_mod.compose(prosody, QINGMING, seed=3, pitch_model="gpt")
    template = melody.template
    assert len(melody.notes) == len(prosody.syllables)
    assert all((n.pitch - template.tonic_midi) % 12 in template.scale for n in melody.notes)
    assert (melody.notes[-1].pitch - template.tonic_midi) % 12 == 0
    stats = melody_mod.compose(prosody, QINGMING, seed=3, pitch_model="stats")
    assert [n.pitch for n in melody.notes] != [n.pitch for n in stats.notes]
    with pytest.raises(ConfigError, match="pitch_model"):
        melody_mod.compose(prosody, QINGMING, pitch_model="lstm")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        melody_model.load_model("/nonexistent/melody_gpt")


def test_limericks_swing_in_three_with_stresses_on_downbeats():
    limerick = ("There was an Old Man with a beard,\nWho said, 'It is just as I feared!\nTwo Owls and a Hen,\n"
                "Four Larks and a Wren,\nHave all built their nests in my beard!'")
    prosody = analyze(limerick)
    melody = melody_mod.compose(prosody, limerick, seed=0, form="limerick")
    template = melody.template
    assert template.beats_per_bar == 3 and template.strong_step == template.bar_units == 6
    stressed = [n for n in melody.notes if n.syllable.stressed]
    assert stressed and all(n.onset % 6 == 0 for n in stressed)
    four_four = melody_mod.compose(prosody, limerick, seed=0)  # without the form: the stresses decide
    assert four_four.template.beats_per_bar in (3, 4)
    # 平长仄短: a level-tone syllable sharing a beat with an oblique one gets the longer share.
    ping, ru = analyze("山").syllables[0], analyze("白").syllables[0]
    ping.stressed = ru.stressed = True
    assert (ping.level, ru.level) == ("ping", "ru")
    assert melody_mod._share(4, [ping, ru], triple=False) == [3, 1]
    assert melody_mod._share(4, [ru, ping], triple=False) == [2, 2]


def test_pentatonic_modes_of_corpus_tunes_and_their_own_register_statistics():
    from collections import Counter

    from synesthesia_midi.corpus_stats import pentatonic_mode

    # sol la do re mi ending on sol: zhi; la do re mi sol ending on la: yu; a chromatic line: none.
    assert pentatonic_mode(Counter({0: 5, 2: 3, 5: 4, 7: 4, 9: 2})) == "zhi"
    assert pentatonic_mode(Counter({0: 5, 3: 3, 5: 4, 7: 4, 10: 2})) == "yu"
    assert pentatonic_mode(Counter({d: 1 for d in range(12)})) == "other"
    modes = melody_mod.load_stats()["families"]["zh"]["modes"]
    assert all(modes[m]["tunes"] >= melody_mod.MIN_MODE_TUNES for m in ("gong", "shang", "zhi", "yu"))
    # The major third above the final belongs to gong, not to zhi: each mode's table says so.
    gong, zhi = melody_mod.IntervalModel("zh", "gong"), melody_mod.IntervalModel("zh", "zhi")
    assert gong.register_logp(4, True) > zhi.register_logp(4, True) + 2.0
    assert zhi.register_logp(5, True) > gong.register_logp(5, True) + 2.0
    # Han songs live mostly in the octave above their final.
    assert zhi.register_logp(5, False) > zhi.register_logp(-9, False) + 1.0


def test_zhi_is_written_in_the_key_of_its_gong_and_melodies_end_on_the_final():
    prosody = analyze(QINGMING)
    zhi = melody_mod.compose(prosody, QINGMING, seed=1, key="G", mode="zhi")
    assert zhi.template.key == (0, "major") and zhi.template.key_name == "C"  # G zhi: 1=C
    assert set(zhi.template.key_triad) == {5, 9, 0}  # C E G above the final G
    yu = melody_mod.compose(prosody, QINGMING, seed=1, key="A", mode="yu")
    assert yu.template.key_name == "Am"
    for melody in (zhi, yu):
        assert melody.notes[-1].pitch == melody.template.tonic_midi


def test_melody_gpt_trains_on_the_core_trainer_and_ships_a_core_checkpoint(tmp_path):
    """The melody GPT's training is synesthesia.train's loop (metrics, checkpoint, resume) and its shipped
    folder is a save_checkpoint folder without a tokenizer, loaded by load_checkpoint."""
    import json
    import random

    from synesthesia.checkpoint import load_checkpoint, load_train_state
    from synesthesia_midi import melody_model

    rng = random.Random(0)
    tunes = [[melody_model.START["zh"]] + [rng.choice([12, 14, 16, 19, 21, melody_model.STRONG]) for _ in range(40)]
             for _ in range(24)]
    cache = tmp_path / "sequences.json"
    cache.write_text(json.dumps({"train": tunes[:20], "val": tunes[20:]}), encoding="utf-8")
    out, run = tmp_path / "melody_gpt", tmp_path / "run"
    first = melody_model.train(out, run_dir=run, steps=4, batch=4, cache=cache)
    assert first["steps"] == 4 and load_train_state(run / "checkpoint")["step"] == 4
    resumed = melody_model.train(out, run_dir=run, steps=8, batch=4, cache=cache, resume=True)
    assert resumed["steps"] == 8
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    assert [r["step"] for r in rows if "loss" in r] == [4, 8]  # the end of each run
    shipped = load_checkpoint(out)
    assert shipped.tokenizer is None and shipped.config.vocab_size == melody_model.VOCAB_SIZE
    assert shipped.meta["trained_by"] == "synesthesia.train" and shipped.meta["val_loss"] == resumed["val_loss"]
    model, meta = melody_model.load_model(str(out))
    assert meta["tokens"]["strong"] == melody_model.STRONG and model.config.n_layer == 3
