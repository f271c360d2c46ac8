"""The ``hf`` generator's working parts (imports ``transformers`` and ``torch``).

- ``TokenizerView`` gives an HF tokenizer the interface our form constraints use (``id_to_piece``,
  ``vocab_size`` (the model's logits width), ``eos_id``, ``decode``, ``kind``).
- ``ProcessorBridge`` runs our ``LogitsProcessor``s (generated tokens only, [B, T]; logits [B, V]) as one
  HF ``LogitsProcessor`` (whole sequences, prompt included).
- Prompts: a model exported by ``synesthesia export`` (``synesthesia.json`` beside it) gets our control
  tokens as text (``<bos><lang:zh><form:七绝><kw>秋 月</kw><sep>``); a chat model its chat template over
  ``synesthesia_hf.prompts.chat_messages``; any other model a plain instruction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor as HFLogitsProcessor
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from synesthesia.components import Conditioning, GenerationRequest, SamplingSettings
from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia.hardware import resolve_dtype
from synesthesia_hf import prompts

EXPORT_INFO_FILE = "synesthesia.json"  # written by synesthesia.export
BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TokenizerView:
    """An HF tokenizer seen through our tokenizer interface, sized to the model's logits."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_id: int | None, kind: str | None = None):
        self.hf = tokenizer
        self._vocab_size = int(vocab_size)
        self.eos_id = eos_id
        self.bos_id = tokenizer.bos_token_id
        self.pad_id = tokenizer.pad_token_id
        self._special = set(int(i) for i in tokenizer.all_special_ids)
        self._tokens = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), self._vocab_size))))
        self._pieces: list[str] | None = None
        self.kind = kind or self._guess_kind()

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids if 0 <= int(i) < len(self._tokens)]
        return self.hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _piece(self, token_id: int) -> str:
        if token_id >= len(self._tokens):
            return ""  # logits rows past the tokenizer (padded embeddings): never text
        token = self._tokens[token_id] or ""
        if token_id in self._special or BYTE_PIECE.match(token):
            return token  # byte-fallback tokens keep their spelling, as ours: <0x0A> is not the "\n" token
        text = self.hf.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if "\ufffd" in text:  # a partial UTF-8 byte: its spelling, as our tokenizers give it
            return token
        if token.startswith("\u2581") and not text.startswith(" "):  # sentencepiece drops a leading space
            text = " " + text
        return text

    def id_to_piece(self, token_id: int) -> str:
        if self._pieces is None:
            self._pieces = [self._piece(i) for i in range(self._vocab_size)]
        return self._pieces[int(token_id)]

    def token_id(self, token: str) -> int | None:
        found = self.hf.convert_tokens_to_ids(token)
        return None if found is None or found == self.hf.unk_token_id and token != self.hf.unk_token else found

    @property
    def chars(self) -> list[str] | None:
        if self.kind != "char":
            return None
        return [p for i in range(self._vocab_size) if len(p := self.id_to_piece(i)) == 1]

    def _guess_kind(self) -> str:
        """"char" when every token other than special and byte-fallback ones is one character."""
        for i in range(len(self._tokens)):
            token = self._tokens[i] or ""
            if i in self._special or BYTE_PIECE.match(token):
                continue
            if len(self.id_to_piece(i)) != 1:
                return "bpe"
        return "char"

    def encode(self, text: str) -> list[int]:
        return list(self.hf(text, add_special_tokens=False)["input_ids"])


class ProcessorBridge(HFLogitsProcessor):
    """Our processors inside HF's ``generate``: they see only the generated tokens of each candidate."""

    def __init__(self, processors: Sequence[Any], prompt_length: int, eos_id: int | None, before=None):
        self.processors = list(processors)
        self.prompt_length = prompt_length
        self.eos_id = eos_id
        self.before = before  # [B, G] tokens generated in earlier windows (see LoadedHF._decode), or None

    def __call__(self, input_ids, scores):
        from synesthesia.errors import PluginError

        generated = _with_before(self.before, input_ids[:, self.prompt_length:])
        logits = scores
        for processor in self.processors:
            result = processor(generated, logits)
            if result is None:
                continue
            if getattr(result, "shape", None) != logits.shape:
                raise PluginError(f"logits processor {processor!r} returned shape {getattr(result, 'shape', None)}, "
                                  f"expected {tuple(logits.shape)}")
            logits = result
        allowed = torch.isfinite(logits).any(dim=-1)
        if not bool(allowed.all()):
            finished = ((generated == self.eos_id).any(dim=-1) if self.eos_id is not None and generated.numel()
                        else torch.zeros_like(allowed))
            stuck = (~allowed & ~finished).nonzero().flatten().tolist()
            if stuck:
                raise SynesthesiaError(f"the decoding constraints (logits processors) left no possible token for "
                                       f"candidate {stuck[0]} at step {generated.size(1)}; the model's tokenizer "
                                       f"lacks the tokens the form needs")
            logits[~allowed] = 0.0  # finished rows only: HF pads them anyway
        return logits


def _with_before(before, new):
    if before is None or before.size(1) == 0:
        return new
    if before.size(0) != new.size(0):
        before = before.expand(new.size(0), -1)
    return torch.cat([before.to(new.device), new], dim=1)


class StopStrings(StoppingCriteria):
    """Per candidate: done once its new text holds a stop string."""

    def __init__(self, view: TokenizerView, prompt_length: int, stops: Sequence[str], before=None):
        self.view, self.prompt_length, self.stops, self.before = view, prompt_length, list(stops), before

    def __call__(self, input_ids, scores, **kwargs):
        rows = _with_before(self.before, input_ids[:, self.prompt_length:])
        done = [any(s in self.view.decode(row.tolist()) for s in self.stops) for row in rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _TokenQueue:
    """A streamer for ``generate``: new token ids into a queue, across several windows (calls)."""

    def __init__(self):
        import queue

        self.queue: queue.Queue = queue.Queue()
        self._prompt_next = True

    def put(self, value) -> None:
        if self._prompt_next:  # every generate call first puts its prompt
            self._prompt_next = False
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self._prompt_next = True


def _cut(text: str, stops: Sequence[str]) -> str:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(found)] if found else text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def resolve_source(name: str | None) -> tuple[str, Path | None]:
    """(what to pass to from_pretrained, the local folder or None for a cached hub id)."""
    text = str(name or "").strip()
    if not text or text == "auto":
        raise ConfigError("model.generator=hf needs model.name=PATH_OR_ID: a transformers folder or a model id "
                          "in the local Hugging Face cache")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} holds no config.json: not a transformers model folder")
        if (path / "tokenizer.json").is_file() and not (path / EXPORT_INFO_FILE).is_file() \
                and (path / "model.safetensors").is_file() and _is_our_checkpoint(path):
            raise ConfigError(f"{path} is a synesthesia checkpoint, not a transformers folder; export it with "
                              f"`synesthesia export {path} --format hf OUT`, or use model.generator=transformer")
        return str(path), path
    try:
        from synesthesia.plugins import get_registry

        if text in get_registry().checkpoints():
            raise ConfigError(f"'{text}' is a synesthesia checkpoint, not a transformers model; export it with "
                              f"`synesthesia export {text} --format hf OUT` and pass model.name=OUT, or use "
                              f"model.generator=transformer")
    except ConfigError:
        raise
    except Exception:
        pass
    return text, None


def _is_our_checkpoint(path: Path) -> bool:
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model" in data and "format_version" in data


def load_hf(name: str | None, device: str = "cpu", dtype: str = "float32") -> LoadedHF:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, folder = resolve_source(name)
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a run
    if dtype == "auto":  # bfloat16 on a CUDA device that has it; on a CPU our timings are not of this model
        dtype = resolve_dtype("auto", device) if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ConfigError(f"model.dtype={dtype} is not available with model.generator=hf; use float32, bfloat16 "
                          "or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("model.device=cuda but torch sees no CUDA device; use model.device=cpu")
    cached = folder is None
    if cached:  # a model id: its snapshot in the local cache (the folder's name is the commit: the revision)
        from huggingface_hub import snapshot_download

        try:
            # HF_HUB_CACHE read now, not when huggingface_hub was imported
            folder = Path(snapshot_download(source, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE")))
        except Exception:  # not cached (or not a valid id): the same line either way
            raise SynesthesiaError(f"no model '{source}' in the local Hugging Face cache (the hf generator never "
                                   f"downloads): fetch it first (`hf download {source}`) or give a folder") from None
    where = f"'{source}' in the local Hugging Face cache ({folder})" if cached else f"folder {folder}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=DTYPES[dtype])
    except OSError as exc:
        raise SynesthesiaError(f"cannot load the model in {where}: {_one_line(exc)}") from None
    except (ValueError, KeyError) as exc:
        raise SynesthesiaError(f"transformers cannot load {where} as a causal LM: {_one_line(exc)}") from None
    model = model.to(device).eval()
    return LoadedHF(name=str(name), source=source, folder=folder, model=model, tokenizer=tokenizer,
                    device=device, dtype=dtype, transformers_version=transformers.__version__, cached=cached)


class LoadedHF:
    """A transformers causal LM in memory, generating through ``model.generate``."""

    def __init__(self, *, name: str, source: str, folder: Path | None, model: Any, tokenizer: Any, device: str,
                 dtype: str, transformers_version: str, cached: bool = False):
        self.name, self.source, self.folder, self.cached = name, source, folder, cached
        self.model, self.hf_tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.transformers_version = transformers_version
        self.export_info: dict[str, Any] = {}
        if folder is not None and (folder / EXPORT_INFO_FILE).is_file():
            self.export_info = json.loads((folder / EXPORT_INFO_FILE).read_text(encoding="utf-8"))
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = model.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        self.eos_id = None if eos is None else int(eos)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        self.tokenizer = TokenizerView(tokenizer, vocab, self.eos_id, kind=self.export_info.get("tokenizer_kind"))
        if self.export_info:
            self.prompt_format = "synesthesia-controls"
        elif getattr(tokenizer, "chat_template", None):
            self.prompt_format = "chat-template"
        else:
            self.prompt_format = "plain"
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or \
            getattr(model.config, "n_positions", None)

    # ---------------------------------------------------------------------------------------------- prompts

    def _map_theme(self, conditioning: Conditioning) -> tuple[Conditioning, dict[str, Any] | None]:
        """For an exported model: the theme as the keywords it was trained with (as the native generator),
        and the mapping made (None when nothing was mapped)."""
        if not conditioning.keywords or self.folder is None:
            return conditioning, None
        from synesthesia.keywords import load_keyword_vocabulary, map_theme

        languages = list(self.export_info.get("languages") or [])
        language = conditioning.language or (languages[0] if languages else "en")
        vocabulary = load_keyword_vocabulary(self.folder)
        if vocabulary is None:
            return conditioning, None
        mapped = map_theme(conditioning.keywords, language=language, vocabulary=vocabulary, tokenizer=self.tokenizer)
        mapping = {"theme": list(conditioning.keywords), "keywords": mapped.keywords,
                   "substitutions": mapped.substitutions, "unknown": mapped.unknown}
        return replace(conditioning, keywords=mapped.keywords), mapping

    def prompt_text(self, conditioning: Conditioning) -> str:
        """The prompt this model is given for ``conditioning``."""
        return self._prompt_and_mapping(conditioning)[0]

    def describe_request(self, request: GenerationRequest) -> dict[str, Any]:
        """What this model makes of ``request``, for the manifest: its prompt and the theme words it was
        conditioned on (``theme_mapping``, None when nothing was mapped)."""
        prompt, mapping = self._prompt_and_mapping(request.conditioning)
        return {"prompt": prompt, "theme_mapping": mapping}

    def _prompt_and_mapping(self, conditioning: Conditioning) -> tuple[str, dict[str, Any] | None]:
        if self.prompt_format == "synesthesia-controls":
            from synesthesia.tokenizer import format_conditioned

            conditioning, mapping = self._map_theme(conditioning)
            from synesthesia.forms import primer_text

            primer = primer_text(self.export_info.get("meta", {}).get("primer"), conditioning)
            if primer:
                conditioning = replace(conditioning, prefix=primer + conditioning.prefix)
            forms, languages = self.export_info.get("forms") or [], self.export_info.get("languages") or []
            # Control tokens the model lacks are left out, as our tokenizers do.
            conditioning = replace(conditioning, form=conditioning.form if conditioning.form in forms else None,
                                   language=conditioning.language if conditioning.language in languages else None)
            return format_conditioned(conditioning), mapping
        if self.prompt_format == "chat-template":
            text = self.hf_tokenizer.apply_chat_template(prompts.chat_messages(conditioning), tokenize=False,
                                                         add_generation_prompt=True)
            return text + conditioning.prefix, None
        return prompts.plain_prompt(conditioning), None

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        # Chat templates already hold the BOS they need; exported prompts spell <bos> as text.
        ids = self.tokenizer.encode(self.prompt_text(request.conditioning))
        if not ids:
            ids = [self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.eos_id]
        if self.max_positions:  # as the native sampler: a prompt longer than the context keeps its end
            ids = ids[-int(self.max_positions):]
        return ids

    def _processors(self, request: GenerationRequest) -> list[Any]:
        processors = list(request.logits_processors)
        if request.make_logits_processors is not None:
            processors += list(request.make_logits_processors(self.tokenizer))
        return processors

    # ---------------------------------------------------------------------------------------------- decoding

    def _generate_kwargs(self, request: GenerationRequest, context, max_new: int, n: int, processors: list[Any],
                         before=None) -> dict[str, Any]:
        """``generate`` arguments for one window: ``context`` [1 or n, T] ids, ``before`` earlier windows' tokens."""
        from transformers import GenerationConfig

        s: SamplingSettings = request.sampling
        sample = s.temperature > 0 and s.top_k != 1
        rows = n if context.size(0) == 1 and sample else 1
        if not sample and context.size(0) == 1:  # greedy: HF takes no num_return_sequences; n equal rows
            context = context.expand(n, -1).contiguous()
        config = GenerationConfig(
            max_new_tokens=max_new, do_sample=sample, num_return_sequences=rows,
            temperature=float(s.temperature) if sample else None, top_k=int(s.top_k or 0) if sample else None,
            top_p=float(s.top_p) if sample and s.top_p else (1.0 if sample else None),
            min_p=float(s.min_p) if sample and s.min_p else None,
            repetition_penalty=float(s.repetition_penalty), eos_token_id=self.eos_id,
            pad_token_id=self.hf_tokenizer.pad_token_id if self.hf_tokenizer.pad_token_id is not None else self.eos_id,
            bos_token_id=self.tokenizer.bos_id,
        )
        if not sample:
            config.num_beams = 1
        context = context.to(self.model.device)
        kwargs: dict[str, Any] = dict(input_ids=context, attention_mask=torch.ones_like(context),
                                      generation_config=config)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(
                [ProcessorBridge(processors, context.size(1), self.eos_id, before)])
        if s.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [StopStrings(self.tokenizer, context.size(1), s.stop, before)])
        return kwargs

    def _decode(self, request: GenerationRequest, prompt_ids: list[int], n: int, streamer=None):
        """New token ids [n, T'] for n candidates. A model with a short context slides its window as the native
        sampler does: when the context is full, the last three quarters of it (prompt and text) start the next
        window, so greedy decoding gives the native path's tokens whatever the length."""
        total = int(request.sampling.max_new_tokens)
        processors = self._processors(request)
        cap = int(self.max_positions) if self.max_positions else None
        keep = max(1, cap - cap // 4) if cap else None
        prompt = torch.tensor([prompt_ids], dtype=torch.long)
        context, generated = prompt, torch.empty(1, 0, dtype=torch.long)
        self._seed(request.sampling.seed)
        while generated.size(1) < total:
            remaining = total - generated.size(1)
            step = remaining if cap is None else min(remaining, cap - context.size(1) + 1)
            kwargs = self._generate_kwargs(request, context, step, n, processors, generated)
            if streamer is not None:
                kwargs["streamer"] = streamer
            with torch.no_grad():
                out = self.model.generate(**kwargs).cpu()
            new = out[:, context.size(1):]
            generated = torch.cat([generated.expand(new.size(0), -1), new], dim=1)
            finished = ((generated == self.eos_id).any(dim=1) if self.eos_id is not None
                        else torch.zeros(1, dtype=torch.bool))
            if new.size(1) < step or bool(finished.all()) or cap is None:
                break
            context = torch.cat([prompt.expand(generated.size(0), -1), generated], dim=1)[:, -keep:]
        return generated

    def _seed(self, seed: int) -> None:
        torch.manual_seed(int(seed))

    def _text(self, row: list[int], request: GenerationRequest) -> str:
        if self.eos_id is not None and self.eos_id in row:
            row = row[:row.index(self.eos_id)]
        return request.conditioning.prefix + _cut(self.tokenizer.decode(row), request.sampling.stop)

    def generate(self, request: GenerationRequest) -> list[str]:
        prompt_ids = self._prompt_ids(request)
        if int(request.sampling.max_new_tokens) <= 0:
            return [request.conditioning.prefix] * request.n
        generated = self._decode(request, prompt_ids, request.n)
        return [self._text(row, request) for row in generated.tolist()]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        prompt_ids = self._prompt_ids(request)
        if request.conditioning.prefix:
            yield request.conditioning.prefix
        if int(request.sampling.max_new_tokens) <= 0:
            return
        streamer = _TokenQueue()
        failure: list[BaseException] = []
        done = object()

        def run() -> None:
            try:
                self._decode(request, prompt_ids, 1, streamer)
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)
            finally:
                streamer.queue.put(done)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        stops, ids, emitted = list(request.sampling.stop), [], ""
        while True:
            item = streamer.queue.get()
            if item is done:
                break
            ids.extend(item)
            ended = self.eos_id is not None and self.eos_id in ids
            text = self._text(ids, request)[len(request.conditioning.prefix):]
            full = self.tokenizer.decode(ids[:ids.index(self.eos_id)] if ended else ids)
            stopped = len(text) < len(full)
            if not (ended or stopped):  # hold back a partial character or the start of a stop string
                hold = max([k for st in stops for k in range(1, len(st)) if text.endswith(st[:k])]
                           + [len(text) - len(text.rstrip("\ufffd"))], default=0)
                text = text[:len(text) - hold]
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
                emitted = text
            if ended or stopped:
                break
        thread.join()
        if failure:
            raise failure[0]

    def score(self, request: GenerationRequest, texts: list[str]) -> list[float]:
        """Mean log-likelihood per token of each text after the prompt (no constraints), for ranking."""
        prompt_ids = self._prompt_ids(request)
        prefix = request.conditioning.prefix
        scores = []
        with torch.no_grad():
            for text in texts:
                body = text[len(prefix):] if prefix and text.startswith(prefix) else text
                body_ids = self.tokenizer.encode(body)
                ids = prompt_ids + body_ids
                if self.max_positions:
                    ids = ids[-int(self.max_positions):]
                n_text = min(len(body_ids), len(ids) - 1)
                if n_text <= 0:
                    scores.append(0.0)
                    continue
                idx = torch.tensor([ids], dtype=torch.long, device=self.model.device)
                logits = self.model(idx).logits[0, :-1].float()  # [T-1, V]
                logp = torch.log_softmax(logits, dim=-1)
                targets = idx[0, 1:]
                picked = logp[torch.arange(targets.numel()), targets][-n_text:]
                scores.append(float(picked.mean()))
        return scores

    # ---------------------------------------------------------------------------------------------- manifest

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        cached = self.cached and self.folder is not None
        revision = self.folder.name if cached else getattr(config, "_commit_hash", None)
        weights = None
        if self.folder is not None:
            single = self.folder / "model.safetensors"
            if single.is_file() and single.stat().st_size < 512 * 1024 * 1024:  # hash what is cheap to hash
                weights = hashlib.sha256(single.read_bytes()).hexdigest()
        return {
            "generator": "hf",
            "backend": f"transformers {self.transformers_version}",
            "name": self.name,
            "model_id": self.source if self.cached or self.folder is None else (
                self.export_info.get("source", {}).get("name") or self.folder.name),
            "path": str(self.folder) if self.folder is not None else None,
            "revision": revision,
            "sha256": weights,
            "architecture": (getattr(config, "architectures", None) or [type(self.model).__name__])[0],
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "tokenizer": type(self.hf_tokenizer).__name__,
            "tokenizer_kind": self.tokenizer.kind,
            "device": self.device,
            "inference_dtype": self.dtype,
            "prompt_format": self.prompt_format,
            "exported_from": self.export_info.get("source"),
        }
