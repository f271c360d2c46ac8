"""Decoding: turn a prompt into candidate texts, token by token.

``generate_ids`` is the core loop over token ids (prefill once, then one KV-cached step per token, all
candidates in one batch). ``TextSampler`` wraps it with a tokenizer: EOS and stop strings per candidate,
text out, and streaming.

The order of operations on each step's next-token scores [B, V]:

1. the logits processors (plugins' constraints), in the order given;
2. the repetition penalty (CTRL-style: divide a positive score, multiply a negative one, for every token
   already in the prompt or the generated text);
3. temperature 0 means greedy (argmax); otherwise divide by the temperature;
4. top-k keeps the k best; top-p keeps the smallest set of those whose renormalised probability reaches
   p (found with ``torch.topk``, never by sorting the whole vocabulary); min-p drops tokens whose
   probability is below ``min_p`` times the best one's; then one token is drawn.

Randomness comes from a local ``torch.Generator`` seeded with ``settings.seed``: the same seed, prompt,
model and candidate count give the same text, whatever else uses the global RNG.

Context longer than the model's ``block_size`` slides: when the cache is full, the most recent three
quarters of the context are run again as a fresh prompt and decoding continues from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from synesthesia.components import LogitsProcessor, SamplingSettings
from synesthesia.errors import ConfigError, PluginError, SynesthesiaError

if TYPE_CHECKING:  # torch is imported lazily so that importing this module stays cheap
    import torch

    from synesthesia.model import GPT, InferenceModel

# When top-p runs without top-k, look at this many candidates first and widen only if needed.
_TOP_P_FIRST_CANDIDATES = 64
# On an accelerator, how many steps the decoding loop runs between looks at the host (see generate_ids).
SYNC_EVERY = 8


def check_settings(settings: SamplingSettings) -> None:
    """Raise ConfigError naming the ``generation.*`` field that is out of range or not a number."""
    for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
            raise ConfigError(f"generation.{name} must be a number, got {value!r}")
    if settings.temperature is None or settings.temperature < 0:
        raise ConfigError(f"generation.temperature must be >= 0 (0 = greedy), got {settings.temperature!r}")
    if settings.top_k is not None and settings.top_k < 0:
        raise ConfigError(f"generation.top_k must be >= 0 or null (0/null = off), got {settings.top_k!r}")
    if settings.top_p is not None and not 0.0 < settings.top_p <= 1.0:
        raise ConfigError(f"generation.top_p must be in (0, 1] or null, got {settings.top_p!r}")
    if settings.min_p is not None and not 0.0 <= settings.min_p <= 1.0:
        raise ConfigError(f"generation.min_p must be in [0, 1] or null, got {settings.min_p!r}")
    if settings.repetition_penalty is None or settings.repetition_penalty <= 0:
        raise ConfigError(
            f"generation.repetition_penalty must be > 0 (1.0 = off), got {settings.repetition_penalty!r}"
        )
    if settings.max_new_tokens is None or settings.max_new_tokens < 0:
        raise ConfigError(f"generation.max_new_tokens must be >= 0, got {settings.max_new_tokens!r}")
    if not isinstance(settings.seed, int) or isinstance(settings.seed, bool):
        raise ConfigError(f"generation.seed must be an integer, got {settings.seed!r}")
    if any(not isinstance(s, str) or not s for s in settings.stop or ()):
        raise ConfigError(f"generation.stop must be a list of non-empty strings, got {settings.stop!r}")


def apply_repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float):
    """logits [B, V], history [B, T] token ids seen so far -> penalised logits (in place)."""
    if penalty == 1.0 or history.size(1) == 0:
        return logits
    import torch

    seen = torch.gather(logits, 1, history)  # [B, T]; repeats of a token gather the same score
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter_(1, history, seen)


def pick_tokens(logits: torch.Tensor, settings: SamplingSettings,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose one token per row of logits [B, V] (already processed and penalised) -> [B] ids."""
    import torch

    V = logits.size(-1)
    top_k = settings.top_k if settings.top_k and settings.top_k < V else None
    if settings.temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / settings.temperature
    top_p = settings.top_p if settings.top_p is not None and settings.top_p < 1.0 else None

    if top_k is not None:
        scores, candidates = torch.topk(logits, top_k, dim=-1)  # [B, k], best first
    elif top_p is not None:
        # Widen the candidate set until it holds top_p of the probability mass of every row.
        log_total = torch.logsumexp(logits, dim=-1, keepdim=True)  # [B, 1]
        k = min(_TOP_P_FIRST_CANDIDATES, V)
        while True:
            scores, candidates = torch.topk(logits, k, dim=-1)
            if k == V or (scores - log_total).exp().sum(-1).min() >= top_p:
                break
            k = min(4 * k, V)
    else:
        scores, candidates = logits, None  # the whole vocabulary, unsorted

    probs = torch.softmax(scores, dim=-1)  # renormalised over the candidates
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_p is not None:
        # Candidates are sorted: keep each one while the mass before it is still short of top_p.
        mass_before = probs.cumsum(dim=-1) - probs
        keep &= mass_before < top_p
    if settings.min_p:
        keep &= probs >= settings.min_p * probs.max(dim=-1, keepdim=True).values
    probs = probs.masked_fill(~keep, 0.0)
    choice = torch.multinomial(probs, 1, generator=generator)  # [B, 1]
    if candidates is not None:
        choice = torch.gather(candidates, 1, choice)
    return choice.squeeze(1)


def _apply_processors(processors: Sequence[LogitsProcessor], generated, logits):
    for processor in processors:
        result = processor(generated, logits)
        if result is None:  # a processor that edits in place and forgets to return is still fine
            continue
        if getattr(result, "shape", None) != logits.shape:
            raise PluginError(
                f"logits processor {processor!r} returned shape {getattr(result, 'shape', None)}, "
                f"expected {tuple(logits.shape)}; it must return the [batch, vocab] logits"
            )
        logits = result
    return logits


def _check_some_token_allowed(logits: torch.Tensor, finished: torch.Tensor, step: int) -> None:
    """Raise if an unfinished candidate has every token forbidden; give finished ones a dummy row."""
    allowed = (logits > float("-inf")).any(dim=-1)  # [n]; False also for an all-NaN row
    if bool(allowed.all()):
        return
    stuck = (~allowed & ~finished.to(logits.device)).nonzero().flatten().tolist()
    if stuck:
        raise SynesthesiaError(
            f"the decoding constraints (logits processors) left no possible token for candidate "
            f"{stuck[0]} at step {step}; relax the form's constraints or check the tokenizer has the "
            f"tokens they allow"
        )
    logits[~allowed] = 0.0  # finished rows only: any token will do, it is discarded


def generate_ids(model: GPT | InferenceModel, prompt_ids: Sequence[int] | torch.Tensor,
                 settings: SamplingSettings, *, n: int = 1,
                 logits_processors: Sequence[LogitsProcessor] = (), eos_id: int | None = None,
                 finished: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Decode ``n`` candidates after one prompt; yield the [n] new token ids of every step.

    ``finished`` (optional bool [n] tensor) is shared with the caller: a candidate is finished when it
    emits ``eos_id`` or when the caller marks it (e.g. a stop string). Finished candidates keep a row
    in the batch but yield ``eos_id`` (when given) and no longer need an allowed token. Decoding ends
    when every candidate is finished or after ``settings.max_new_tokens`` steps.

    Raises SynesthesiaError when the logits processors leave an unfinished candidate no allowed token.
    """
    import torch

    from synesthesia.model import GPT

    check_settings(settings)
    if n < 1:
        raise ConfigError(f"the number of candidates must be >= 1, got {n}")
    fast = model.prepare_for_inference() if isinstance(model, GPT) else model
    device = fast.device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)  # [1, Tp]
    if prompt.size(1) == 0:
        raise SynesthesiaError("the prompt is empty; give at least one token (e.g. the tokenizer's <bos>)")
    vocab_size = fast.config.vocab_size
    if int(prompt.min()) < 0 or int(prompt.max()) >= vocab_size:
        raise SynesthesiaError(
            f"prompt token ids must be in [0, {vocab_size}) for this model; the tokenizer does not "
            f"match the model (vocab_size={vocab_size})"
        )
    if finished is None:
        finished = torch.zeros(n, dtype=torch.bool)
    elif finished.shape != (n,):
        raise SynesthesiaError(f"finished must be a bool tensor of shape ({n},), got {tuple(finished.shape)}")
    # On the host, ``finished`` itself is read every step. On an accelerator the loop keeps its own copy on
    # the device and looks at the host (the caller's marks, "all finished?") only every SYNC_EVERY steps:
    # nothing in between waits for the device, so steps queue up (a finished candidate may yield up to
    # SYNC_EVERY - 1 tokens past its end, which a caller ignores as it ignores tokens after eos).
    on_host = finished.device == device
    done = finished if on_host else finished.to(device)
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    steps = settings.max_new_tokens
    if steps == 0:
        return
    generator = torch.Generator(device=device)
    generator.manual_seed(int(settings.seed))

    prompt_length = prompt.size(1)
    history = torch.empty(n, prompt_length + steps, dtype=torch.long, device=device)  # prompt + new
    history[:, :prompt_length] = prompt
    capacity = fast.config.block_size
    keep_on_slide = max(1, capacity - capacity // 4)
    cache = fast.new_cache(n)
    logits = fast.prefill(prompt[:, -capacity:], cache)  # [n, V]
    eos = None if eos_id is None else torch.tensor(eos_id, device=device)

    for t in range(steps):
        length = prompt_length + t
        if logits_processors:  # the model's own logits are finite; only constraints can forbid all
            logits = _apply_processors(logits_processors, history[:, prompt_length:length], logits)
            _check_some_token_allowed(logits, done, t)
        logits = apply_repetition_penalty(logits, history[:, :length], settings.repetition_penalty)
        tokens = pick_tokens(logits, settings, generator)  # [n]
        if eos is not None:
            tokens = torch.where(done, eos, tokens)
            done |= tokens == eos
        history[:, length] = tokens
        yield tokens
        if t == steps - 1:
            return
        if (t + 1) % sync_every == 0:
            if not on_host:  # merge the caller's marks and ours
                done |= finished.to(device, non_blocking=True)
                finished |= done.cpu()
            if bool(finished.all()):
                return
        if cache.length == capacity:  # slide the window: re-run the most recent context
            logits = fast.prefill(history[:, length + 1 - keep_on_slide:length + 1], cache)
        else:
            logits = fast.step(tokens, cache)


def _cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could still become a stop string (or an unfinished character)."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    # A byte-level tokenizer decodes half of a multi-byte character as U+FFFD until the rest arrives.
    tail = len(text) - len(text.rstrip("\ufffd"))
    return max(hold, tail)


class TextSampler:
    """Sample text from a ``GPT`` with a tokenizer (duck-typed: ``decode(ids)`` and ``eos_id``).

    ``dtype`` picks the inference weights: "float32" (default; tokens identical to the training model's
    forward pass), "bfloat16" (faster on CPUs with bf16 support, logits within rounding of float32),
    "int8" (weight-only int8, bf16 activations; the fastest at batch 1, logits within a few percent) or
    "auto" (what this machine runs fastest, never slower than float32: ``synesthesia.hardware``;
    ``dtype_choice`` says what was chosen and why). ``compile`` compiles the decoding step with
    ``torch.compile`` (``InferenceModel``: the same tokens, paid for once per process). The inference copy
    is made once here; build a new sampler after the weights change.
    """

    def __init__(self, model: GPT, tokenizer: Any, device: str = "cpu", dtype: Any = "float32",
                 compile: bool = False):
        from synesthesia.hardware import choose_dtype

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.dtype_choice = choose_dtype(str(dtype).removeprefix("torch."), device, "inference")
        self.fast = self.model.prepare_for_inference(self.dtype_choice.dtype, compile=compile)
        self.host_every = 1 if self.fast.device.type == "cpu" else SYNC_EVERY  # steps per copy to the host

    def _prompt(self, prompt_ids) -> list[int]:
        ids = [int(i) for i in prompt_ids]
        if not ids:
            bos = getattr(self.tokenizer, "bos_id", None)
            if bos is None:
                raise SynesthesiaError("the prompt is empty and the tokenizer has no <bos>; give a prompt")
            ids = [bos]
        return ids

    def _candidates(self, prompt_ids, settings: SamplingSettings, n: int,
                    logits_processors) -> Iterator[tuple[list[list[int]], list[str | None]]]:
        """Run the decoder; every ``host_every`` steps yield (token ids per candidate, final text or None).

        On the CPU that is every step. On an accelerator the new tokens are copied to the host once per
        ``SYNC_EVERY`` steps (one copy of a [k, n] block), so the decoding loop never waits for the device
        in between (``generate_ids`` looks at the caller's marks as often)."""
        import torch

        stops = list(settings.stop or ())
        eos_id = getattr(self.tokenizer, "eos_id", None)
        ids: list[list[int]] = [[] for _ in range(n)]
        final: list[str | None] = [None] * n
        finished = torch.zeros(n, dtype=torch.bool)
        pending: list[torch.Tensor] = []  # new tokens [n] per step, still on the device
        for tokens in generate_ids(self.fast, self._prompt(prompt_ids), settings, n=n,
                                   logits_processors=tuple(logits_processors), eos_id=eos_id,
                                   finished=finished):
            pending.append(tokens)
            if len(pending) >= self.host_every:
                self._take([tokens.tolist()] if len(pending) == 1 else torch.stack(pending).tolist(),
                           ids, final, finished, stops, eos_id)
                pending.clear()
                yield ids, final
        if pending:
            self._take(torch.stack(pending).tolist(), ids, final, finished, stops, eos_id)
        for i in range(n):  # out of tokens: what was written so far is the text
            if final[i] is None:
                final[i] = self.tokenizer.decode(ids[i])
        yield ids, final

    def _take(self, steps: list[list[int]], ids: list[list[int]], final: list[str | None], finished: Any,
              stops: list[str], eos_id: int | None) -> None:
        """Append each step's tokens (steps [k][n]) to the unfinished candidates; an eos or a stop string
        finishes one (its final text; ``finished`` marks it for the decoding loop)."""
        for tokens in steps:
            for i, token in enumerate(tokens):
                if final[i] is not None:
                    continue
                if eos_id is not None and token == eos_id:
                    final[i] = self.tokenizer.decode(ids[i])
                    continue
                ids[i].append(token)
                if stops:
                    text = self.tokenizer.decode(ids[i])
                    cut = _cut_at_stop(text, stops)
                    if cut is not None:
                        final[i] = text[:cut]
                        finished[i] = True

    def generate(self, prompt_ids, settings: SamplingSettings, n: int = 1,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[str]:
        """``n`` candidate texts after the prompt (the prompt excluded), each cut before a stop string."""
        final: list[str | None] = [None] * n
        for _, latest in self._candidates(prompt_ids, settings, n, logits_processors):
            final = latest  # the last yield holds every candidate's final text
        return [text or "" for text in final]

    def stream(self, prompt_ids, settings: SamplingSettings,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Iterator[str]:
        """Yield one candidate's text in pieces as it is decoded; the pieces join to ``generate``'s text.

        Text that might turn out to be the start of a stop string is held back until it is clear.
        """
        stops = list(settings.stop or ())
        emitted = ""
        for ids, final in self._candidates(prompt_ids, settings, 1, logits_processors):
            if final[0] is not None:
                text = final[0]
            else:
                text = self.tokenizer.decode(ids[0])
                text = text[:len(text) - _held_back(text, stops)]
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
                emitted = text
            if final[0] is not None:
                return
