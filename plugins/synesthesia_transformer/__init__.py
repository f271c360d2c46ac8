"""The core transformer as a text generator (built-in plugin).

Registers the generator ``transformer`` (our own GPT, loaded from a checkpoint folder) and the
checkpoints shipped in this package's ``checkpoints/`` folder (``tang``, ``shakespeare``).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import synesthesia
from synesthesia.components import Conditioning, GenerationRequest

CHECKPOINTS = Path(__file__).parent / "checkpoints"


class LoadedTransformer:
    """A checkpoint in memory, sampling through ``synesthesia.sampling.TextSampler``."""

    def __init__(self, name: str, checkpoint: Any, device: str, dtype: str = "float32",
                 compile: bool = False) -> None:
        from synesthesia.sampling import TextSampler

        self.name = name
        self.checkpoint = checkpoint
        self.tokenizer = checkpoint.tokenizer
        self.sampler = TextSampler(checkpoint.model, checkpoint.tokenizer, device=device, dtype=dtype,
                                   compile=compile)
        self.dtype = self.sampler.dtype_choice.dtype  # dtype=auto resolved for this machine
        # The last conditioning prepared (a copy), its prompt ids and what describe_request reports: the rounds
        # of one artwork and the scoring of their candidates share one conditioning, prepared once.
        self._prepared: tuple[Conditioning, list[int], dict[str, Any]] | None = None

    def describe(self) -> dict[str, Any]:
        """The model, for the manifest (what one request made of it: ``describe_request``)."""
        model = self.checkpoint.model
        return {
            "generator": "transformer",
            "name": self.name,
            "path": str(self.checkpoint.path),
            "sha256": self.checkpoint.sha256,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "config": {k: v for k, v in vars(model.config).items()},
            "tokenizer": type(self.tokenizer).__name__,
            "inference_dtype": self.dtype,
            "dtype_choice": self.sampler.dtype_choice.to_dict(),  # what was asked (auto?), chosen, and why
            "compiled": self.sampler.fast.compile,
            "card": dict(self.checkpoint.meta or {}).get("card"),
        }

    def describe_request(self, request: GenerationRequest) -> dict[str, Any]:
        """What this model makes of ``request``, for the manifest: the theme words it was conditioned on
        (``theme_mapping``, None without keywords) and the primer it was prompted with (None without)."""
        return dict(self._prepare(request.conditioning)[1])

    def _prepare(self, conditioning: Conditioning) -> tuple[list[int], dict[str, Any]]:
        """The prompt ids for ``conditioning`` (theme words mapped, primer prepended) and what was made of it."""
        prepared = self._prepared
        if prepared is not None and prepared[0] == conditioning:
            return prepared[1], prepared[2]
        mapped, mapping = self._conditioning_for_model(conditioning)
        primer = self._primer(mapped) or None
        if primer:
            mapped = replace(mapped, prefix=primer + mapped.prefix)
        prompt_ids = self.tokenizer.encode_conditioned(mapped)
        report = {"theme_mapping": mapping, "primer": primer}
        self._prepared = (copy.deepcopy(conditioning), prompt_ids, report)
        return prompt_ids, report

    def _conditioning_for_model(self, conditioning: Conditioning) -> tuple[Conditioning, dict[str, Any] | None]:
        """The theme words as keywords this model was trained with (autumn → 秋 for ``tang``) and the
        mapping made, saying on stderr which words it could not map."""
        if not conditioning.keywords:
            return conditioning, None
        from synesthesia.keywords import load_keyword_vocabulary, map_theme

        languages = list(getattr(self.tokenizer, "languages", []) or [])
        language = conditioning.language or (languages[0] if languages else "en")
        mapped = map_theme(conditioning.keywords, language=language,
                           vocabulary=load_keyword_vocabulary(self.checkpoint.path), tokenizer=self.tokenizer)
        mapping = {"theme": list(conditioning.keywords), "keywords": mapped.keywords,
                   "substitutions": mapped.substitutions, "unknown": mapped.unknown}
        if mapped.unknown:  # once per conditioning (see _prepare), not once per round of candidates
            print(f"note: model '{self.name}' knows no keyword for: {', '.join(mapped.unknown)}"
                  + (f"; conditioning on {' '.join(mapped.keywords)}" if mapped.keywords else ""), file=sys.stderr)
        return replace(conditioning, keywords=mapped.keywords), mapping

    def _primer(self, conditioning: Conditioning) -> str:
        """Text the model is prompted with before the poem that is not part of it, from the checkpoint's
        ``meta.primer`` ({"text", "forms"}): a drama-trained model is given a speaker's cue so that it
        writes that speaker's lines rather than a cue of its own (also for a form ``like`` a listed one)."""
        from synesthesia.forms import primer_text

        return primer_text(dict(self.checkpoint.meta or {}).get("primer"), conditioning)

    def _prompt_and_processors(self, request: GenerationRequest) -> tuple[list[int], list[Any]]:
        prompt_ids, _ = self._prepare(request.conditioning)
        processors = list(request.logits_processors)
        if request.make_logits_processors is not None:
            processors += list(request.make_logits_processors(self.tokenizer))
        return prompt_ids, processors

    def generate(self, request: GenerationRequest) -> list[str]:
        prompt_ids, processors = self._prompt_and_processors(request)
        texts = self.sampler.generate(prompt_ids, request.sampling, n=request.n, logits_processors=processors)
        prefix = request.conditioning.prefix
        return [prefix + t for t in texts]

    def score(self, request: GenerationRequest, texts: list[str]) -> list[float]:
        """Mean log-likelihood per token of each text after the request's prompt (the model's own
        probabilities, no constraints): how the pipeline ranks candidates by likelihood."""
        import torch

        prompt_ids, _ = self._prepare(request.conditioning)  # as generate() built it for these candidates
        prefix = request.conditioning.prefix
        block = self.checkpoint.model.config.block_size
        scores = []
        model = self.checkpoint.model
        with torch.no_grad():
            for text in texts:
                body = text[len(prefix):] if prefix and text.startswith(prefix) else text
                ids = (prompt_ids + self.tokenizer.encode(body))[-block - 1:]
                n_text = min(len(ids) - 1, len(ids) - len(prompt_ids)) if body else 0
                if n_text <= 0:
                    scores.append(0.0)
                    continue
                idx = torch.tensor([ids[:-1]], dtype=torch.long, device=self.sampler.device)
                targets = torch.full_like(idx, -100)
                targets[0, -n_text:] = torch.tensor(ids[-n_text:])
                _, loss = model(idx, targets)
                scores.append(-float(loss))
        return scores

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        prompt_ids, processors = self._prompt_and_processors(request)
        if request.conditioning.prefix:
            yield request.conditioning.prefix
        yield from self.sampler.stream(prompt_ids, request.sampling, logits_processors=processors)


class TransformerGenerator:
    """Our own decoder-only transformer. ``model.name`` is a registered checkpoint or a folder."""

    name = "transformer"
    # model.* options the pipeline hands to ``load`` besides name, device and dtype.
    options = ("compile",)

    def load(self, model: str | None, device: str = "cpu", dtype: str = "float32",
             compile: bool = False) -> LoadedTransformer:
        """``compile``: torch.compile the decoding step (``model.compile``; pays in long-lived processes)."""
        from synesthesia.checkpoint import load_checkpoint
        from synesthesia.plugins import resolve_checkpoint

        path = resolve_checkpoint(model or "")
        return LoadedTransformer(str(model), load_checkpoint(path, device=device), device, dtype, bool(compile))


@synesthesia.hookimpl
def register_generators(register):
    register(TransformerGenerator())


@synesthesia.hookimpl
def register_checkpoints(register):
    if CHECKPOINTS.is_dir():
        for folder in sorted(CHECKPOINTS.iterdir()):
            if (folder / "config.json").is_file():
                register(folder.name, folder)
