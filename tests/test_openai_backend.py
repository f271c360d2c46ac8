"""The `openai` generator through the official client against real OpenAI-compatible servers on loopback.

- ``serve``: the project's own ``synesthesia serve`` (a subprocess, ``--port 0``, an API key set), the
  form sent as its ``form`` extension so its constraints apply.
- ``openai_server``, a TEST FIXTURE: a small real server (FastAPI + uvicorn on 127.0.0.1, a free port) with
  ``/v1/models`` and ``/v1/chat/completions`` (+ ``stream``) over our transformer generator, standing in for a
  generic instruction-following LLM: it reads the form and theme from the chat prompt the client sends (the
  rules-in-the-prompt path), checks the bearer key, and its model ``flaky`` answers 503 twice before it works
  (the retries), which the project's server cannot be made to do.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
from fastapi import FastAPI, Request  # module level: the route annotations are resolved from here
from fastapi.responses import JSONResponse, StreamingResponse

from synesthesia.components import GenerationRequest
from synesthesia.errors import SynesthesiaError
from synesthesia.pipeline import plan, run_pipeline
from synesthesia.plugins import get_registry
from tests.conftest import REPO, run_cli

KEY_ENV, KEY = "SYNESTHESIA_TEST_OPENAI_KEY", "sk-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(state: dict):
    """The stand-in OpenAI-compatible server (test fixture only)."""
    app = FastAPI()
    served = ["tang", "flaky"]

    def error(status: int, message: str, kind: str):
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {KEY}"

    @app.get("/v1/models")
    def models(request: Request):
        if not authorised(request):
            return error(401, "Incorrect API key provided", "invalid_request_error")
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                                           for m in served]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if not authorised(request):
            return error(401, "Incorrect API key provided", "invalid_request_error")
        body = await request.json()
        state["requests"].append(body)
        if body["model"] not in served:
            return error(404, f"The model `{body['model']}` does not exist", "invalid_request_error")
        if body["model"] == "flaky" and state["flaky_failures"] < 2:
            state["flaky_failures"] += 1
            return error(503, "overloaded, try again", "server_error")
        prompt = body["messages"][-1]["content"]
        form = re.search(r"in the form (\S+?)\.", prompt).group(1)
        theme = (re.search(r"Theme: (.+?)\.", prompt) or [None, ""])[1]
        p = plan({"form": form, "theme": theme, "model": {"name": "tang"}, "seed": int(body.get("seed") or 0),
                  "generation": {"temperature": body.get("temperature", 0.8)}})
        request_ = GenerationRequest(conditioning=p.form.conditioning(p.request), sampling=p.sampling,
                                     n=int(body.get("n") or 1),
                                     make_logits_processors=lambda tok: p.form.logits_processors(tok, p.request))
        generator = state["generator"]
        base = {"id": "chatcmpl-test", "created": int(time.time()), "model": body["model"],
                "system_fingerprint": "fp_test"}
        if body.get("stream"):
            def events():
                for piece in generator.stream(replace(request_, n=1)):
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                done = {**base, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        texts = generator.generate(request_)
        return {**base, "object": "chat.completion",
                "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                            for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    return app


@pytest.fixture(scope="module")
def openai_server():
    import uvicorn

    state = {"requests": [], "flaky_failures": 0, "generator": get_registry().generator("transformer").load("tang")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield {"url": f"http://127.0.0.1:{port}/v1", "port": port, "state": state}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def config(server, **model):
    return {"form": "七绝", "theme": "秋月",
            "model": {"generator": "openai", "name": "tang", "base_url": server["url"], "api_key_env": KEY_ENV,
                      **model},
            "generation": {"candidates": 3, "max_attempts": 2}, "pipeline": {"renderers": []}}


def request_for(cfg, n=3):
    p = plan(cfg)
    return p, GenerationRequest(conditioning=p.form.conditioning(p.request), sampling=p.sampling, n=n)


def test_a_pipeline_through_a_real_server(tmp_path, openai_server, key):
    artwork = run_pipeline(config(openai_server), tmp_path, log=lambda m: None)
    assert artwork.manifest["validation"]["ok"], artwork.text
    model = artwork.manifest["model"]
    assert model["generator"] == "openai" and model["backend"].startswith("openai-python ")
    assert model["endpoint_host"] == f"127.0.0.1:{openai_server['port']}" and model["model_id"] == "tang"
    assert model["revision"] == "fp_test" and model["api_key_env"] == KEY_ENV
    user = model["prompt"]["messages"][-1]["content"]
    assert "七绝" in user and "Theme: 秋 月" in user and "平仄" in user  # the form's rules, theme and language
    sent = openai_server["state"]["requests"][-1]
    assert sent["n"] == 3 and sent["seed"] == 0 and sent["model"] == "tang"
    text = (artwork.path / "manifest.json").read_text(encoding="utf-8")
    assert KEY not in text and "sk-test" not in text  # the key is never written


def test_streaming_and_n_candidates(openai_server, key):
    loaded = get_registry().generator("openai").load("tang", base_url=openai_server["url"], api_key_env=KEY_ENV)
    _, request = request_for(config(openai_server))
    assert len(loaded.generate(request)) == 3
    pieces = list(loaded.stream(request))
    assert len(pieces) > 3 and len("".join(pieces).strip()) >= 28


def test_retries_with_backoff_on_5xx(openai_server, key):
    loaded = get_registry().generator("openai").load("flaky", base_url=openai_server["url"], api_key_env=KEY_ENV)
    _, request = request_for(config(openai_server), n=1)
    started = time.perf_counter()
    assert loaded.generate(request)[0]
    assert openai_server["state"]["flaky_failures"] == 2 and time.perf_counter() - started >= 1.5  # 0.5 s + 1 s


def test_one_line_failures(openai_server, monkeypatch):
    generator = get_registry().generator("openai")
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(SynesthesiaError, match=r"refused the API key \(401\).*\$SYNESTHESIA_TEST_OPENAI_KEY") as e:
        generator.load("tang", base_url=openai_server["url"], api_key_env=KEY_ENV)
    assert "wrong" not in str(e.value)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(SynesthesiaError, match="serves no model 'nope'; it serves: flaky, tang"):
        generator.load("nope", base_url=openai_server["url"], api_key_env=KEY_ENV)
    closed = free_port()
    with pytest.raises(SynesthesiaError, match=f"cannot connect to 127.0.0.1:{closed}"):
        generator.load("tang", base_url=f"http://127.0.0.1:{closed}/v1", api_key_env=KEY_ENV)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SynesthesiaError, match=r"needs an API key in \$OPENAI_API_KEY"):
        generator.load("gpt-4o-mini")


@pytest.mark.slow
def test_the_cli_with_base_url(tmp_path, openai_server):
    result = run_cli("run", "form=七绝", "theme=秋月", "model.generator=openai", "model.name=tang",
                     f"model.base_url={openai_server['url']}", f"model.api_key_env={KEY_ENV}",
                     "generation.candidates=2", "pipeline=text_only", cwd=tmp_path, env={KEY_ENV: KEY})
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    manifest = json.loads(next(tmp_path.glob("outputs/*/*/artwork/manifest.json")).read_text(encoding="utf-8"))
    assert manifest["model"]["endpoint_host"] == f"127.0.0.1:{openai_server['port']}"
    assert KEY not in json.dumps(manifest)
    refused = run_cli("run", "form=七绝", "model=openai", "model.name=tang",  # the plugin's config group
                      f"model.base_url=http://127.0.0.1:{free_port()}/v1", cwd=tmp_path)
    assert refused.returncode == 1 and "cannot connect to 127.0.0.1" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# The project's own server: synesthesia serve


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "synesthesia", "serve", "--port", "0", "--artworks",
                             str(tmp_path_factory.mktemp("gallery")), "--model", "tang", "--no-warm-up",
                             "--api-key", KEY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO)
    url, lines = None, []
    deadline = time.time() + 120
    while url is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"synesthesia serve: (http://\S+)", line)
        url = found.group(1) if found else None
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep the pipe drained
    if url is None:
        proc.kill()
        raise AssertionError("synesthesia serve did not start:\n" + "".join(lines))
    yield url + "/v1"
    proc.terminate()
    proc.wait(timeout=60)


def test_a_pipeline_through_synesthesia_serve(tmp_path, serve, key):
    cfg = {**config({"url": serve}), "generation": {"candidates": 3, "max_attempts": 1}}
    artwork = run_pipeline(cfg, tmp_path, log=lambda m: None)
    assert artwork.manifest["validation"]["ok"], artwork.text
    assert all(c["ok"] for c in artwork.manifest["candidates"])  # the server's constraints held for all 3
    model = artwork.manifest["model"]
    assert model["prompt_format"] == "synesthesia-server" and model["prompt"]["extra_body"] == {"form": "七绝"}
    assert model["endpoint_host"] == serve.split("//")[1].split("/")[0]
    assert KEY not in (artwork.path / "manifest.json").read_text(encoding="utf-8")
    loaded = get_registry().generator("openai").load("tang", base_url=serve, api_key_env=KEY_ENV)
    _, request = request_for(cfg)
    assert len("".join(loaded.stream(request)).strip()) >= 28  # streamed over SSE


def test_synesthesia_serve_failures_are_one_line(serve, monkeypatch):
    generator = get_registry().generator("openai")
    monkeypatch.setenv(KEY_ENV, "wrong")
    loaded = generator.load("tang", base_url=serve, api_key_env=KEY_ENV)
    _, request = request_for(config({"url": serve}), n=1)
    with pytest.raises(SynesthesiaError, match=r"refused the API key \(401\)"):
        loaded.generate(request)
    with pytest.raises(SynesthesiaError, match="serves no model 'nope'; it serves: tang"):
        generator.load("nope", base_url=serve, api_key_env=KEY_ENV)
