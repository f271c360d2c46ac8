"""Quality figures for the shipped models (`tang`, `shakespeare`), printed as tables.

    python benchmarks/bench_models.py                      # both models, 200 poems per form
    python benchmarks/bench_models.py --per-form 50 --skip-english

Needs the prepared corpora the models were trained on (``make corpora``: work-data/tang/train.jsonl and
work-data/shakespeare/train.jsonl); the held-out split is recomputed exactly as the trainer made it
(the last 10% of the packed token stream, cut at a document start).

Tang, per form, from generations with fixed seeds (raw model: no decoding constraints; the poetry
plugin's constrained figures are in its own benchmark):

- form accuracy: the poem has the form's line count and every line the form's length;
- novelty: share of generated lines that do not occur verbatim as a line in the training corpus;
- distinct-2: distinct character bigrams / all character bigrams, over the form's generations;
- keyword adherence: share of the given theme characters that appear in the poem;
- val ppl: perplexity of the held-out poems of that form (text and end-of-poem tokens; controls given).

Shakespeare: val loss in nats per character of text on the held-out tail (control and keyword tokens
given, not scored), the trainer's own val loss (all tokens), and distinct-2 / novelty of generations.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "plugins" / "synesthesia_transformer" / "checkpoints"
FORMS = {"五绝": (4, 5), "七绝": (4, 7), "五律": (8, 5), "七律": (8, 7)}
TANG_THEMES = ["秋 月", "春 花", "山 水", "雁", "江 雪", "故鄉", "酒", "風 雨", "柳", "夜 雨", "白雲", "孤舟"]
ENGLISH_THEMES = ["love", "death", "crown", "night", "sea", "war", "king", "heart"]


def held_out_documents(corpus: Path, tokenizer, val_fraction: float, language: str):
    """The documents the trainer held out (same packing and cut as synesthesia.train)."""
    from synesthesia.data import load_documents, pack_documents, split_train_val

    documents = load_documents([corpus], language=language)
    packed = pack_documents(documents, tokenizer)
    train, _ = split_train_val(packed, val_fraction)
    cut = len(train)
    starts = packed.starts.tolist()
    return documents, [doc for doc, start in zip(documents, starts) if start >= cut]


def _document_ids(tokenizer, document) -> tuple[list[int], int]:
    controls = tokenizer.encode_controls(document.language, document.form, document.keywords)
    return controls + tokenizer.encode(document.text) + [tokenizer.eos_id], len(controls)


def text_token_losses(model, tokenizer, documents, batch_size: int = 64) -> list[tuple[float, int]]:
    """Per document: summed loss (nats) and count over its text and <eos> tokens, controls given.

    Documents that fit the context are scored whole, in padded batches; longer ones in windows of
    ``block_size`` that overlap by half, each token scored once with at least half a window of context.
    """
    import torch
    import torch.nn.functional as F

    block = model.config.block_size
    encoded = [_document_ids(tokenizer, d) for d in documents]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(documents)
    short = [i for i, (ids, _) in enumerate(encoded) if len(ids) <= block + 1]
    short.sort(key=lambda i: len(encoded[i][0]))
    for b in range(0, len(short), batch_size):
        group = short[b : b + batch_size]
        width = max(len(encoded[i][0]) for i in group) - 1
        x = torch.zeros((len(group), width), dtype=torch.long)
        y = torch.full((len(group), width), -100, dtype=torch.long)
        for row, i in enumerate(group):
            ids, n_controls = encoded[i]
            x[row, : len(ids) - 1] = torch.tensor(ids[:-1])
            targets = torch.tensor(ids[1:])
            targets[: n_controls - 1] = -100  # the controls and <sep> are given, not predicted
            y[row, : len(ids) - 1] = targets
        with torch.no_grad():
            logits, _ = model(x, y)
        losses = F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=-100, reduction="none")
        for row, i in enumerate(group):
            mask = y[row] != -100
            results[i] = (float(losses[row][mask].sum()), int(mask.sum()))
    for i, (ids, n_controls) in enumerate(encoded):
        if len(ids) <= block + 1:
            continue
        total, count, position = 0.0, 0, n_controls  # next target index to score
        while position < len(ids):
            start = max(0, min(position - block // 2, len(ids) - 1 - block))
            window = ids[start : start + block + 1]
            x = torch.tensor([window[:-1]])
            y = torch.tensor([window[1:]])
            with torch.no_grad():
                logits, _ = model(x, y)
            losses = F.cross_entropy(logits[0].float(), y[0], reduction="none")
            keep = torch.arange(start + 1, start + len(window)) >= position
            total += float(losses[keep].sum())
            count += int(keep.sum())
            position = start + len(window)
        results[i] = (total, count)
    return results


def corpus_lines(records) -> set[str]:
    from synesthesia.corpus import poem_lines

    lines = set()
    for record in records:
        found = poem_lines(record["text"].splitlines())
        lines.update(found or [])
    return lines


def distinct_2(sequences) -> float:
    total, seen = 0, set()
    for seq in sequences:
        pairs = list(zip(seq, seq[1:]))
        total += len(pairs)
        seen.update(pairs)
    return len(seen) / total if total else 0.0


def bench_tang(path: Path, corpus: Path, per_form: int, seed: int) -> list[dict]:
    from synesthesia.checkpoint import load_checkpoint
    from synesthesia.components import Conditioning, SamplingSettings
    from synesthesia.corpus import classify_form, poem_lines, read_records
    from synesthesia.keywords import load_keyword_vocabulary, map_theme
    from synesthesia.sampling import TextSampler

    ckpt = load_checkpoint(path)
    tokenizer, model = ckpt.tokenizer, ckpt.model.eval()
    vocabulary = load_keyword_vocabulary(path)
    _, val_docs = held_out_documents(corpus, tokenizer, 0.1, "zh")
    known = corpus_lines(read_records(corpus))
    sampler = TextSampler(model, tokenizer)
    rows = []
    for form, (n_lines, length) in FORMS.items():
        losses = text_token_losses(model, tokenizer, [d for d in val_docs if d.form == form])
        nats, tokens = sum(loss for loss, _ in losses), sum(c for _, c in losses)
        poems, adherence, ok_form, ok_lines, ok_lengths = [], [], 0, 0, 0
        n_themes = len(TANG_THEMES)
        started = time.time()
        for t, theme in enumerate(TANG_THEMES):
            n = per_form // n_themes + (1 if t < per_form % n_themes else 0)
            if n == 0:
                continue
            keywords = map_theme(theme, language="zh", vocabulary=vocabulary, tokenizer=tokenizer).keywords
            settings = SamplingSettings(temperature=0.8, top_k=50, top_p=0.95,
                                        max_new_tokens=(n_lines * (length + 1)) * 3 // 2, seed=seed + t)
            prompt = tokenizer.encode_conditioned(Conditioning(form=form, keywords=keywords, language="zh"))
            for text in sampler.generate(prompt, settings, n=n):
                lines = poem_lines(text.splitlines()) or []
                poems.append((text, lines))
                ok_lines += len(lines) == n_lines
                ok_lengths += bool(lines) and all(len(line) == length for line in lines)
                ok_form += bool(lines) and classify_form(lines) == form
                chars = [c for k in keywords for c in k]
                adherence.append(sum(c in text for c in chars) / len(chars) if chars else 1.0)
        all_lines = [line for _, lines in poems for line in lines]
        rows.append({
            "form": form, "n": len(poems), "form_acc": ok_form / len(poems), "line_count_acc": ok_lines / len(poems),
            "line_length_acc": ok_lengths / len(poems),
            "novelty": sum(line not in known for line in all_lines) / max(1, len(all_lines)),
            "distinct_2": distinct_2(re.sub(r"[，。\n]", "", text) for text, _ in poems),
            "keyword_adherence": sum(adherence) / len(adherence),
            "val_ppl": math.exp(nats / tokens) if tokens else float("nan"), "val_poems": len(losses),
            "seconds": round(time.time() - started, 1), "example": poems[0][0],
        })
    return rows


def bench_english(path: Path, corpus: Path, samples: int, seed: int) -> dict:
    from synesthesia.checkpoint import load_checkpoint
    from synesthesia.components import Conditioning, SamplingSettings
    from synesthesia.corpus import read_records
    from synesthesia.keywords import load_keyword_vocabulary, map_theme
    from synesthesia.sampling import TextSampler

    ckpt = load_checkpoint(path)
    tokenizer, model = ckpt.tokenizer, ckpt.model.eval()
    _, val_docs = held_out_documents(corpus, tokenizer, 0.1, "en")
    losses = text_token_losses(model, tokenizer, val_docs)
    nats, chars = sum(loss for loss, _ in losses), sum(c for _, c in losses)
    vocabulary = load_keyword_vocabulary(path)
    known = {line.strip() for r in read_records(corpus) for line in r["text"].splitlines() if line.strip()}
    sampler = TextSampler(model, tokenizer)
    texts = []
    per_theme = max(1, samples // len(ENGLISH_THEMES))
    for t, theme in enumerate(ENGLISH_THEMES):
        keywords = map_theme(theme, language="en", vocabulary=vocabulary).keywords
        settings = SamplingSettings(temperature=0.8, top_k=50, top_p=0.95, max_new_tokens=400, seed=seed + t)
        prompt = tokenizer.encode_conditioned(Conditioning(keywords=keywords, language="en"))
        texts += sampler.generate(prompt, settings, n=per_theme)
    # Lines of at least three words; speaker cues ("KING RICHARD II:") are not counted.
    lines = [line.strip() for text in texts for line in text.splitlines()
             if len(line.split()) >= 3 and not line.strip().endswith(":")]
    trainer_val = None
    meta_val = (ckpt.meta or {}).get("val_loss")
    if meta_val is not None:
        trainer_val = float(meta_val)
    return {
        "val_loss_text": nats / chars, "val_chars": chars, "trainer_val_loss": trainer_val,
        "distinct_2": distinct_2([re.findall(r"[a-z']+", t.lower()) for t in texts]),
        "novelty": sum(line not in known for line in lines) / max(1, len(lines)), "samples": len(texts),
        "example": texts[0],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tang", type=Path, default=CHECKPOINTS / "tang")
    parser.add_argument("--shakespeare", type=Path, default=CHECKPOINTS / "shakespeare")
    parser.add_argument("--tang-corpus", type=Path, default=ROOT / "work-data" / "tang" / "train.jsonl")
    parser.add_argument("--shakespeare-corpus", type=Path, default=ROOT / "work-data" / "shakespeare" / "train.jsonl")
    parser.add_argument("--per-form", type=int, default=200)
    parser.add_argument("--english-samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--skip-tang", action="store_true")
    parser.add_argument("--skip-english", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # small-batch decoding: extra intra-op threads only add wake-up latency
    for needed in ([args.tang_corpus] if not args.skip_tang else []) + (
            [args.shakespeare_corpus] if not args.skip_english else []):
        if not needed.is_file():
            sys.exit(f"{needed}: prepared corpus not found; run `make corpora` (scripts/prepare_corpora.sh) first")
    result: dict = {}
    if not args.skip_tang:
        rows = bench_tang(args.tang, args.tang_corpus, args.per_form, args.seed)
        result["tang"] = rows
        print(f"\ntang ({args.tang.name}): {args.per_form} generations per form, seeds {args.seed}+theme, "
              "temperature 0.8, top-k 50, top-p 0.95, no decoding constraints")
        print("| form | n | form acc | line count | line length | novelty | distinct-2 | keyword adh. "
              "| val ppl (poems) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['form']} | {r['n']} | {r['form_acc']:.3f} | {r['line_count_acc']:.3f} | "
                  f"{r['line_length_acc']:.3f} | {r['novelty']:.3f} | {r['distinct_2']:.3f} | "
                  f"{r['keyword_adherence']:.3f} | {r['val_ppl']:.1f} ({r['val_poems']}) |")
        for r in rows:
            print(f"  e.g. {r['form']}: " + r["example"].replace("\n", " / "))
    if not args.skip_english:
        e = bench_english(args.shakespeare, args.shakespeare_corpus, args.english_samples, args.seed)
        result["shakespeare"] = e
        print(f"\nshakespeare ({args.shakespeare.name}): {e['samples']} generations of 400 tokens")
        print("| val loss (nats/char, text) | trainer val loss (all tokens) | distinct-2 (words) | novelty (lines) | "
              "nanoGPT baby CPU | nanoGPT 10.7M GPU | target |")
        print("|---|---|---|---|---|---|---|")
        tv = f"{e['trainer_val_loss']:.3f}" if e["trainer_val_loss"] is not None else "n/a"
        print(f"| {e['val_loss_text']:.3f} | {tv} | {e['distinct_2']:.3f} | {e['novelty']:.3f} "
              "| 1.88 | 1.47 | ≤ 1.60 |")
        print("  e.g. " + e["example"][:300].replace("\n", " / "))
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
