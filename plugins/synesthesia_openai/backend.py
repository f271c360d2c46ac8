"""The ``openai`` generator's working parts (imports the ``openai`` client).

Requests: a system message and a user message from ``synesthesia_hf.prompts`` (the form's rules, the theme,
the language); ``n`` candidates (servers that return fewer, as llama.cpp's and Ollama's do, are asked again
until there are ``n``). Against ``synesthesia serve`` (its ``/v1/models`` entries name their ``generator``) the
user message is the theme and the form goes in the request's ``form`` extension, so its constraints apply.

Failures are one line: connection refused, 401, an unknown model (with the served ones named); 429 and 5xx
are retried with exponential backoff (``Retry-After`` honoured, capped). The API key is read from the
environment variable named by ``model.api_key_env``; neither it nor any header is written to the manifest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import openai

from synesthesia.components import Conditioning, GenerationRequest
from synesthesia.errors import ConfigError, SynesthesiaError
from synesthesia_hf import prompts

BACKOFF_S = 0.5  # first retry wait; doubles each time
MAX_WAIT_S = 8.0
MAX_STOPS = 4  # OpenAI's limit on stop sequences


def endpoint_host(base_url: str | None) -> str:
    """host[:port] of the endpoint, no credentials, path or query (for manifests and messages)."""
    parsed = urlparse(base_url or "https://api.openai.com/v1")
    host = parsed.hostname or "?"
    return f"{host}:{parsed.port}" if parsed.port else host


def _status_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:200]


class Endpoint:
    """An OpenAI client with our retries and one-line errors."""

    def __init__(self, base_url: str | None, api_key_env: str, timeout: float, max_retries: int):
        self.base_url, self.api_key_env, self.max_retries = base_url, api_key_env, max_retries
        self.host = endpoint_host(base_url)
        key = os.environ.get(api_key_env, "")
        if not key and base_url is None:
            raise ConfigError(f"model.generator=openai without model.base_url talks to OpenAI and needs an API key in "
                              f"${api_key_env}; set it, or point model.base_url at your own server")
        # Local servers (llama.cpp, Ollama, vLLM) often need no key; the client insists on some string.
        self.client = openai.OpenAI(base_url=base_url, api_key=key or "no-key", timeout=timeout, max_retries=0)

    def call(self, what: str, fn, *args, **kwargs):
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except openai.APITimeoutError:
                if attempt == self.max_retries:
                    raise SynesthesiaError(f"{self.host} did not answer {what} within the timeout "
                                           f"({self.max_retries + 1} tries)") from None
            except openai.APIConnectionError as exc:
                raise SynesthesiaError(f"cannot connect to {self.host} ({_status_line(exc.__cause__ or exc)}); "
                                       f"is the server running at {self.base_url}?") from None
            except openai.AuthenticationError:
                raise SynesthesiaError(f"{self.host} refused the API key (401) for {what}; set a valid key in "
                                       f"${self.api_key_env}") from None
            except openai.PermissionDeniedError:
                raise SynesthesiaError(f"{self.host} denied {what} (403): this key may not use it") from None
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                if attempt == self.max_retries:
                    raise SynesthesiaError(f"{self.host} answered {exc.status_code} to {what} "
                                           f"{self.max_retries + 1} times: {_status_line(exc)}") from None
                time.sleep(self._wait(exc, attempt))
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    if attempt == self.max_retries:
                        raise SynesthesiaError(f"{self.host} answered {exc.status_code} to {what}: "
                                               f"{_status_line(exc)}") from None
                    time.sleep(self._wait(exc, attempt))
                    continue
                raise SynesthesiaError(
                    f"{self.host} answered {exc.status_code} to {what}: {_status_line(exc)}") from None
        raise SynesthesiaError(f"{self.host}: {what} failed")  # not reached

    @staticmethod
    def _wait(exc: Any, attempt: int) -> float:
        try:
            after = float(exc.response.headers.get("retry-after", ""))
        except (AttributeError, TypeError, ValueError):
            after = 0.0
        return min(MAX_WAIT_S, max(after, BACKOFF_S * 2 ** attempt))


def load_openai(model: str | None, *, base_url: str | None, api_key_env: str, timeout: float,
                max_retries: int) -> LoadedOpenAI:
    name = str(model or "").strip()
    if not name or name == "auto":
        raise ConfigError("model.generator=openai needs model.name=MODEL (a model the server serves)")
    endpoint = Endpoint(base_url, api_key_env, timeout, max_retries)
    served: dict[str, Any] | None = None
    try:
        listing = endpoint.call("GET /models", endpoint.client.models.list)
        served = {m.id: m for m in listing.data}
    except SynesthesiaError as exc:
        if "answered 404" not in str(exc) and "answered 405" not in str(exc):
            raise  # no /models on this server is fine; anything else is a real failure
    if served is not None and name not in served:
        raise SynesthesiaError(f"{endpoint.host} serves no model '{name}'; it serves: "
                               f"{', '.join(sorted(served)) or 'none'}")
    entry = served.get(name) if served else None
    extra = (entry.model_extra or {}) if entry is not None else {}
    return LoadedOpenAI(name, endpoint, synesthesia_server="generator" in extra,
                        owned_by=getattr(entry, "owned_by", None))


class LoadedOpenAI:
    """A model at an OpenAI-compatible endpoint. No logits: constraints are the validators' job."""

    def __init__(self, name: str, endpoint: Endpoint, *, synesthesia_server: bool, owned_by: str | None):
        self.name, self.endpoint = name, endpoint
        self.synesthesia_server = synesthesia_server
        self.owned_by = owned_by
        self.fingerprints: list[str] = []
        self.served_model: str | None = None

    def _prompt(self, c: Conditioning) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The chat messages and the request's extra body for ``c``."""
        if self.synesthesia_server:  # our own server: theme as the message, the form as its extension
            return ([{"role": "user", "content": " ".join(c.keywords) or c.prefix or "poem"}],
                    {"form": c.form} if c.form else None)
        return prompts.chat_messages(c), None

    def describe_request(self, request: GenerationRequest) -> dict[str, Any]:
        """What this model is sent for ``request``, for the manifest: the messages and the extra body."""
        messages, extra_body = self._prompt(request.conditioning)
        return {"prompt": {"messages": messages, "extra_body": extra_body}}

    def _request(self, request: GenerationRequest, n: int, stream: bool = False) -> dict[str, Any]:
        s = request.sampling
        messages, extra_body = self._prompt(request.conditioning)
        if self.synesthesia_server:
            max_tokens = int(s.max_new_tokens) or None
        else:
            # Remote tokenizers spend more tokens per character than ours; chat models add a line or two.
            max_tokens = max(128, 3 * int(s.max_new_tokens)) if s.max_new_tokens else None
        params: dict[str, Any] = dict(model=self.name, messages=messages, n=n, temperature=float(s.temperature),
                                      seed=int(s.seed), stream=stream)
        if s.top_p is not None:
            params["top_p"] = float(s.top_p)
        if max_tokens:
            params["max_tokens"] = max_tokens
        if s.stop:
            params["stop"] = list(s.stop)[:MAX_STOPS]
        if extra_body:
            params["extra_body"] = extra_body
        return params

    @staticmethod
    def _clean(text: str | None) -> str:
        text = (text or "").strip()
        if text.startswith("```"):  # a fenced answer: keep what is inside
            text = text.strip("`").split("\n", 1)[-1] if "\n" in text else text.strip("`")
        return text.strip().strip('"“”').strip()

    def generate(self, request: GenerationRequest) -> list[str]:
        texts: list[str] = []
        seed_shift = 0
        while len(texts) < request.n:  # servers that ignore n give one at a time
            params = self._request(request, request.n - len(texts))
            params["seed"] = int(request.sampling.seed) + seed_shift
            response = self.endpoint.call(f"chat completion with model '{self.name}'",
                                          self.endpoint.client.chat.completions.create, **params)
            self.served_model = getattr(response, "model", None)
            if getattr(response, "system_fingerprint", None):
                self.fingerprints.append(response.system_fingerprint)
            got = [self._clean(choice.message.content) for choice in response.choices]
            if not got:
                raise SynesthesiaError(f"{self.endpoint.host} returned no choices for model '{self.name}'")
            texts += got
            seed_shift += len(got)
        return texts[:request.n]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        params = self._request(request, 1, stream=True)
        chunks = self.endpoint.call(f"streamed chat completion with model '{self.name}'",
                                    self.endpoint.client.chat.completions.create, **params)
        try:
            for chunk in chunks:
                self.served_model = getattr(chunk, "model", None) or self.served_model
                for choice in chunk.choices or []:
                    piece = getattr(choice.delta, "content", None)
                    if piece:
                        yield piece
        except openai.APIError as exc:
            raise SynesthesiaError(f"{self.endpoint.host} broke off the stream: {_status_line(exc)}") from None

    def describe(self) -> dict[str, Any]:
        return {
            "generator": "openai",
            "backend": f"openai-python {openai.__version__}",
            "name": self.name,
            "model_id": self.name,
            "served_model": self.served_model,
            "revision": self.fingerprints[-1] if self.fingerprints else None,  # system_fingerprint, if given
            "owned_by": self.owned_by,
            "endpoint_host": self.endpoint.host,
            "api_key_env": self.endpoint.api_key_env,  # the variable's name, never its value
            "prompt_format": "synesthesia-server" if self.synesthesia_server else "chat",
            "constraints": "validators only (no logits access remotely)",
        }
