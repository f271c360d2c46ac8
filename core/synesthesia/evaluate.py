"""Evaluation: perplexity on held-out text, BLEU of generations against references, distinct-1/2.

- Perplexity: the held-out text is encoded as training documents are (``<bos>[<lang:xx>]<sep>text<eos>``),
  cut into consecutive windows of ``block_size`` tokens, and ``exp`` of the mean next-token
  cross-entropy over every predicted token is reported.
- BLEU (``sacrebleu``, corpus level, 0–100): with ``prompts`` and as many ``references`` (a string or a
  list of strings each), every sample of prompt *i* is scored against references *i*; with references
  but no prompts, unconditioned samples are each scored against all references. Text with CJK
  characters uses sacrebleu's ``zh`` tokenizer, other text ``13a``.
- distinct-n: unique n-grams / all n-grams over all generations; the units are characters for CJK
  text and whitespace-separated words otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synesthesia.components import Conditioning, SamplingSettings
from synesthesia.errors import SynesthesiaError

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def text_units(text: str) -> list[str]:
    """Characters (spaces dropped) for CJK text, whitespace-separated words otherwise."""
    if has_cjk(text):
        return [c for c in text if not c.isspace()]
    return text.split()


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams in ``texts`` (0.0 when there are none)."""
    total, unique = 0, set()
    for text in texts:
        units = text_units(text)
        grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, str]:
    """Corpus BLEU; ``references[i]`` are the references of ``hypotheses[i]``. Returns (score, signature)."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise SynesthesiaError(f"{len(hypotheses)} generations but {len(references)} reference sets")
    if not hypotheses:
        raise SynesthesiaError("no generations to score; give prompts or n_samples > 0")
    width = max(len(r) for r in references)
    if width == 0:
        raise SynesthesiaError("references are empty; give at least one reference text")
    # sacrebleu wants reference streams: stream j holds the j-th reference of every hypothesis
    # (None where a hypothesis has fewer references).
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    joined = " ".join(list(hypotheses) + [r for refs in references for r in refs])
    metric = sacrebleu.metrics.BLEU(tokenize="zh" if has_cjk(joined) else "13a")
    result = metric.corpus_score(list(hypotheses), streams)
    return float(result.score), str(metric.get_signature())


def perplexity(model, tokenizer, text: str | Sequence[str], language: str | None = None,
               device: str = "cpu", batch_size: int = 16) -> tuple[float, float, int]:
    """(perplexity, mean loss, predicted tokens) of the model on ``text`` (one document or several)."""
    import torch
    import torch.nn.functional as F

    documents = [text] if isinstance(text, str) else list(text)
    ids: list[int] = []
    for doc in documents:
        if doc.strip():
            ids.extend(tokenizer.encode_document(doc, language))
    if len(ids) < 2:
        raise SynesthesiaError("held-out text is empty; give some text to measure perplexity on")
    block = model.config.block_size
    tokens = torch.tensor(ids, dtype=torch.long)
    inputs, targets = [], []
    for start in range(0, len(ids) - 1, block):
        x = tokens[start : start + block]
        y = tokens[start + 1 : start + block + 1]
        x = x[: len(y)]
        pad = block - len(x)
        inputs.append(F.pad(x, (0, pad), value=tokenizer.pad_id))
        targets.append(F.pad(y, (0, pad), value=-100))  # -100: not scored
    total_loss, total_count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            x = torch.stack(inputs[i : i + batch_size]).to(device)
            y = torch.stack(targets[i : i + batch_size]).to(device)
            logits, _ = model(x, y)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-100,
                                   reduction="sum")
            total_loss += float(loss)
            total_count += int((y != -100).sum())
    mean = total_loss / total_count
    return math.exp(min(mean, 700.0)), mean, total_count


def evaluate(
    checkpoint: Any,
    heldout_text: str | Path | Sequence[str] | None = None,
    references: Sequence[str | Sequence[str]] | None = None,
    prompts: Sequence[str | Conditioning] | None = None,
    n_samples: int = 8,
    seed: int = 0,
    settings: SamplingSettings | None = None,
    language: str | None = None,
    form: str | None = None,
    device: str = "cpu",
) -> dict:
    """Measure a checkpoint (a folder, a registered name, or a loaded ``Checkpoint``).

    ``heldout_text``: text (or a ``Path`` to a text file, or a list of documents) for perplexity.
    ``prompts``: strings (used as the text prefix, with ``language``/``form`` controls) or
    ``Conditioning`` objects; without prompts one unconditioned prompt is used. ``language`` defaults to
    the model's only language when it was trained on one. ``n_samples``
    generations are drawn per prompt (with ``settings``, seeded by ``seed``).

    Returns a dict with ``perplexity``/``heldout_loss``/``heldout_tokens`` (when held-out text is
    given), ``bleu``/``bleu_signature`` (when references are given), ``distinct_1``/``distinct_2`` and
    ``samples`` (when anything was generated), and the checkpoint's ``checkpoint``/``sha256``.
    """
    from synesthesia.sampling import TextSampler

    ckpt = _load(checkpoint, device)
    model, tokenizer = ckpt.model, ckpt.tokenizer
    language = default_language(tokenizer, language)
    result: dict[str, Any] = {"checkpoint": str(ckpt.path), "sha256": ckpt.sha256}

    if heldout_text is not None:
        if isinstance(heldout_text, Path):
            try:
                heldout_text = heldout_text.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SynesthesiaError(f"{heldout_text}: cannot read held-out text ({exc})") from None
        ppl, loss, count = perplexity(model, tokenizer, heldout_text, language, device)
        result.update(perplexity=ppl, heldout_loss=loss, heldout_tokens=count)

    if references is not None:
        references = [[r] if isinstance(r, str) else list(r) for r in references]
        if prompts is not None and len(prompts) != len(references):
            raise SynesthesiaError(
                f"{len(prompts)} prompts but {len(references)} references; give one reference (or list) per prompt"
            )
    if n_samples < 0:
        raise SynesthesiaError(f"n_samples must be >= 0, got {n_samples}")
    if n_samples == 0 or (prompts is None and references is None and heldout_text is not None):
        return result  # only perplexity was asked for

    conditionings = [
        p if isinstance(p, Conditioning) else Conditioning(prefix=p, language=language, form=form)
        for p in (prompts if prompts is not None else [""])
    ]
    base = settings or SamplingSettings(max_new_tokens=min(128, model.config.block_size))
    sampler = TextSampler(model, tokenizer, device=device)
    samples: list[list[str]] = []
    for i, conditioning in enumerate(conditionings):
        prompt_settings = SamplingSettings(**{**vars(base), "seed": seed + i})
        samples.append(sampler.generate(tokenizer.encode_conditioned(conditioning), prompt_settings, n=n_samples))
    flat = [text for group in samples for text in group]
    result.update(samples=flat, distinct_1=distinct_n(flat, 1), distinct_2=distinct_n(flat, 2))

    if references is not None:
        if prompts is not None:
            refs_per_hypothesis = [references[i] for i, group in enumerate(samples) for _ in group]
        else:
            every = [r for refs in references for r in refs]
            refs_per_hypothesis = [every for _ in flat]
        score, signature = bleu(flat, refs_per_hypothesis)
        result.update(bleu=score, bleu_signature=signature)
    return result


def default_language(tokenizer, language: str | None) -> str | None:
    """``language``, or the model's only language when it was trained on one (its prompts always had it)."""
    if language is None and len(tokenizer.languages) == 1:
        return tokenizer.languages[0]
    return language


def _load(checkpoint, device: str):
    from synesthesia.checkpoint import Checkpoint, load_checkpoint

    if isinstance(checkpoint, Checkpoint):
        checkpoint.model.to(device)
        return checkpoint
    path = Path(checkpoint)
    if not path.exists():
        try:  # a name registered by a plugin, e.g. "tang"
            from synesthesia.plugins import resolve_checkpoint

            path = Path(resolve_checkpoint(str(checkpoint)))
        except ImportError:
            pass
    return load_checkpoint(path, device=device)
