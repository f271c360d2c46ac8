"""An OpenAI-compatible API over the served models: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

- ``/v1/completions``: the model continues ``prompt`` (raw text, no form), as any completion API does. With the
  extension ``form`` (e.g. ``extra_body={"form": "七绝", "theme": "秋月"}``) it writes that form instead, on
  ``theme`` (default: the prompt), with the form's constraints.
- ``/v1/chat/completions``: the last user message is the theme; the reply is a text in ``form`` (extension;
  default ``free``), constrained like ``synesthesia generate``.
- Both stream with ``stream: true`` as OpenAI does (``data: {chunk}`` lines, then ``data: [DONE]``);
  ``stream_options.include_usage`` adds a usage chunk.

Supported fields: ``model`` (a served model id, see ``/v1/models``), ``max_tokens`` (``max_completion_tokens``),
``temperature``, ``top_p``, ``n`` (≤ 8), ``stop`` (≤ 4), ``seed``, ``stream``; extensions ``form``, ``theme``,
``top_k``, ``min_p``, ``repetition_penalty``, ``constrained``. ``presence_penalty``, ``frequency_penalty``,
``user`` and other unknown fields are accepted and ignored; ``logprobs`` is refused. Errors use OpenAI's
shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from synesthesia.components import Conditioning, GenerationRequest, SamplingSettings
from synesthesia.errors import ConfigError

MAX_N = 8


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., min_length=1, max_length=200)
    max_tokens: Optional[int] = Field(None, ge=1, le=4096)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=4096)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: Optional[str | list[str]] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    logprobs: Optional[bool | int] = None
    # extensions
    form: Optional[str] = Field(None, min_length=1, max_length=40)
    theme: Optional[str] = Field(None, max_length=200)
    top_k: Optional[int] = Field(None, ge=0, le=1000)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    repetition_penalty: Optional[float] = Field(None, gt=0, le=5)
    constrained: bool = True


class CompletionBody(_Common):
    prompt: str | list[str] = Field(..., max_length=64)
    echo: bool = False
    suffix: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(..., max_length=32)
    content: Optional[str | list[dict[str, Any]]] = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=64)


def _message_text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(str(part.get("text", "")) for part in message.content or [] if part.get("type") == "text")


class Job:
    """One text to write: the loaded model, its request, and how to tell the text from the prompt."""

    def __init__(self, loaded: Any, request: GenerationRequest, skip: str, form: Any, form_request: Any,
                 max_tokens: int) -> None:
        self.loaded, self.request, self.skip, self.form = loaded, request, skip, form
        self.form_request, self.max_tokens = form_request, max_tokens

    def with_seed(self, seed: int) -> Job:
        request = replace(self.request, sampling=replace(self.request.sampling, seed=seed))
        return Job(self.loaded, request, self.skip, self.form, self.form_request, self.max_tokens)

    def pieces(self) -> Iterator[str]:
        """The text's pieces as decoded, without the prompt text the generator repeats."""
        skip = len(self.skip)
        for piece in self.loaded.stream(self.request):
            if skip:
                cut = min(skip, len(piece))
                piece, skip = piece[cut:], skip - cut
            if piece:
                yield piece

    def count(self, text: str) -> int:
        tokenizer = getattr(self.loaded, "tokenizer", None)
        try:
            return len(tokenizer.encode(text)) if tokenizer is not None else len(text.split())
        except Exception:
            return len(text)

    def prompt_tokens(self) -> int:
        tokenizer = getattr(self.loaded, "tokenizer", None)
        try:
            return len(tokenizer.encode_conditioned(self.request.conditioning))
        except Exception:
            return 0

    def finish_reason(self, text: str) -> str:
        return "length" if self.count(text) >= self.max_tokens else "stop"

    def finalize(self, text: str) -> str:
        if self.form is None or not self.form.finalize:
            return text
        out = self.form.finalize(self.skip + text)
        return out[len(self.skip):] if self.skip and out.startswith(self.skip) else out


def build_job(state: Any, body: _Common, *, prompt: str | None, theme: str | None) -> Job:
    """Plan one text for the body: a form (checked by ``synesthesia.pipeline.plan``) or raw continuation."""
    from synesthesia.pipeline import plan, processors_for

    if body.logprobs:
        raise ConfigError("logprobs are not supported by this server")
    served = state.models.resolve(body.model)
    loaded = state.models.get(body.model)
    base_generation = dict(state.base_config.get("generation") or {})
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
        raise ConfigError("stop: at most 4 non-empty strings of at most 64 characters")
    limit = int(state.settings.max_tokens)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > limit:
        raise ConfigError(f"max_tokens: at most {limit} on this server")
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    # What the request leaves out is the server's composed config's (`synesthesia run`'s defaults).
    sampling = {name: value if value is not None else base_generation[name] for name, value in (
        ("temperature", body.temperature), ("top_k", body.top_k), ("top_p", body.top_p), ("min_p", body.min_p),
        ("repetition_penalty", body.repetition_penalty))}
    if sampling["top_k"] == 0:
        sampling["top_k"] = None
    if body.form is None:  # raw continuation of the prompt
        text = prompt or ""
        request = GenerationRequest(conditioning=Conditioning(prefix=text), sampling=SamplingSettings(
            **sampling, max_new_tokens=max_tokens or SamplingSettings.max_new_tokens, stop=stops, seed=seed))
        return Job(loaded, request, text, None, None, request.sampling.max_new_tokens)
    config = {**state.base_config, "form": body.form, "theme": theme if theme is not None else (prompt or ""),
              "prompt": "", "seed": seed, "form_options": {}, "renderer": {},
              "model": {**dict(state.base_config.get("model") or {}), "generator": served.generator,
                        "name": served.name},
              "generation": {**base_generation, **sampling, "max_new_tokens": max_tokens or 0, "candidates": 1,
                             "constrained": body.constrained},
              "pipeline": {"renderers": []}}
    plan_ = plan(config, state.registry)
    form = plan_.form
    settings = replace(plan_.sampling, stop=list(plan_.sampling.stop) + stops)
    request = GenerationRequest(
        conditioning=form.conditioning(plan_.request), sampling=settings,
        make_logits_processors=processors_for(form, plan_.request, body.constrained))
    return Job(loaded, request, request.conditioning.prefix, form, plan_.request, settings.max_new_tokens)


def _seeds(job: Job, n: int) -> list[Job]:
    return [job.with_seed(job.request.sampling.seed + i) for i in range(n)]


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _whole_texts(jobs: list[Job]) -> tuple[list[str], int]:
    """Each job's whole text (an answer that is not streamed), in order, and the completion tokens of them all."""
    texts = [job.finalize("".join(job.pieces())) for job in jobs]
    return texts, sum(job.count(text) for job, text in zip(jobs, texts))


def _completion_chunks(body: CompletionBody, jobs: list[tuple[str, Job]], cid: str, created: int) -> Iterator[str]:
    """The server-sent events of a streamed /v1/completions answer, one choice after another."""
    completion_tokens = 0
    for index, (prompt, job) in enumerate(jobs):
        if body.echo and prompt:
            yield _sse({"id": cid, "object": "text_completion", "created": created, "model": body.model,
                        "choices": [{"index": index, "text": prompt, "logprobs": None,
                                     "finish_reason": None}]})
        text = ""
        for piece in job.pieces():
            text += piece
            yield _sse({"id": cid, "object": "text_completion", "created": created, "model": body.model,
                        "choices": [{"index": index, "text": piece, "logprobs": None,
                                     "finish_reason": None}]})
        completion_tokens += job.count(text)
        yield _sse({"id": cid, "object": "text_completion", "created": created, "model": body.model,
                    "choices": [{"index": index, "text": "", "logprobs": None,
                                 "finish_reason": job.finish_reason(text)}]})
    if (body.stream_options or {}).get("include_usage"):
        yield _sse({"id": cid, "object": "text_completion", "created": created, "model": body.model,
                    "choices": [], "usage": _usage(sum(j.prompt_tokens() for _, j in jobs),
                                                   completion_tokens)})
    yield "data: [DONE]\n\n"


def _chat_chunks(body: ChatBody, jobs: list[Job], cid: str, created: int) -> Iterator[str]:
    """The server-sent events of a streamed /v1/chat/completions answer, one choice after another."""
    completion_tokens = 0
    for index, job in enumerate(jobs):
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "system_fingerprint": None}
        yield _sse({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})
        text = ""
        for piece in job.pieces():
            text += piece
            yield _sse({**base, "choices": [{"index": index, "delta": {"content": piece},
                                             "logprobs": None, "finish_reason": None}]})
        completion_tokens += job.count(text)
        yield _sse({**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                         "finish_reason": job.finish_reason(text)}]})
    if (body.stream_options or {}).get("include_usage"):
        yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [], "usage": _usage(sum(j.prompt_tokens() for j in jobs),
                                                   completion_tokens)})
    yield "data: [DONE]\n\n"


def build_router(state: Any):
    from fastapi import APIRouter, Depends
    from fastapi.responses import StreamingResponse

    router = APIRouter()
    write = Depends(state.require_write)

    @router.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": m.id, "object": "model", "created": state.started, "owned_by": "synesthesia",
             "generator": m.generator, "loaded": state.models.is_loaded(m)} for m in state.models.served.values()]}

    @router.get("/v1/models/{model_id:path}")
    def get_model(model_id: str) -> dict[str, Any]:
        m = state.models.resolve(model_id)
        return {"id": m.id, "object": "model", "created": state.started, "owned_by": "synesthesia",
                "generator": m.generator, "loaded": state.models.is_loaded(m)}

    @router.post("/v1/completions", dependencies=[write])
    def completions(body: CompletionBody):
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts or any(len(p) > state.settings.max_prompt_chars for p in prompts):
            raise ConfigError(f"prompt: 1-64 prompts of at most {state.settings.max_prompt_chars} characters")
        if len(prompts) * body.n > MAX_N:
            raise ConfigError(f"at most {MAX_N} choices per request (prompts × n)")
        jobs = [(p, j) for p in prompts for j in _seeds(build_job(state, body, prompt=p, theme=body.theme), body.n)]
        cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        state.count_request()
        if body.stream:
            return StreamingResponse(_completion_chunks(body, jobs, cid, created), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        texts, completion_tokens = _whole_texts([job for _, job in jobs])
        choices = [{"index": index, "text": (prompt + text) if body.echo else text, "logprobs": None,
                    "finish_reason": job.finish_reason(text)} for index, ((prompt, job), text) in
                   enumerate(zip(jobs, texts))]
        return {"id": cid, "object": "text_completion", "created": created, "model": body.model,
                "choices": choices, "usage": _usage(sum(j.prompt_tokens() for _, j in jobs), completion_tokens)}

    @router.post("/v1/chat/completions", dependencies=[write])
    def chat_completions(body: ChatBody):
        users = [_message_text(m) for m in body.messages if m.role == "user"]
        theme = body.theme if body.theme is not None else (users[-1] if users else "")
        if len(theme) > state.settings.max_prompt_chars:
            raise ConfigError(f"the last user message is the theme: at most {state.settings.max_prompt_chars} "
                              "characters")
        if body.form is None:
            body = body.model_copy(update={"form": "free"})
        jobs = _seeds(build_job(state, body, prompt="", theme=theme), body.n)
        cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        state.count_request()
        if body.stream:
            return StreamingResponse(_chat_chunks(body, jobs, cid, created), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        texts, completion_tokens = _whole_texts(jobs)
        choices = [{"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
                    "finish_reason": job.finish_reason(text)} for index, (job, text) in enumerate(zip(jobs, texts))]
        return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                "system_fingerprint": None, "choices": choices,
                "usage": _usage(sum(j.prompt_tokens() for j in jobs), completion_tokens)}

    return router
