"""``synesthesia serve`` for real: the command in a subprocess on a free loopback port, driven over real HTTP
by the official ``openai`` client, httpx and (for paths no client would send) ``http.client``."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import REPO

FAST = {"generation": {"candidates": 2}, "renderers": ["poem_text"]}


class ServerProcess:
    """``python -m synesthesia serve --port 0 ...``; the URL is read from the line it prints when ready."""

    def __init__(self, artworks: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.artworks = artworks
        full_env = {k: v for k, v in os.environ.items() if k != "SYNESTHESIA_API_KEY"}
        full_env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})})
        self.proc = subprocess.Popen([sys.executable, "-m", "synesthesia", "serve", "--port", "0", "--artworks",
                                      str(artworks), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=full_env, cwd=REPO)
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(120) or self.url is None:
            self.proc.kill()
            raise AssertionError("server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"synesthesia serve: (http://\S+)", line)
            if found:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def http(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def raw_get(self, path: str) -> int:
        """GET a path exactly as written (no client-side normalisation of ``..``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{self.port}")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert b"root:" not in body
        return response.status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def wait_job(client: httpx.Client, url: str, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(url).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {url} did not finish")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("gallery"))  # the defaults: shipped models, warm-up
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


# --------------------------------------------------------------------------------------------------
# The OpenAI-compatible API


def test_models_completions_and_streams(server, oai):
    assert sorted(m.id for m in oai.models.list()) == ["shakespeare", "tang", "verse"]
    done = oai.completions.create(model="tang", prompt="床前明月光", max_tokens=12, seed=5)
    text = done.choices[0].text
    assert text and not text.startswith("床前明月光") and done.choices[0].finish_reason in {"stop", "length"}
    assert done.usage.completion_tokens >= 1 and done.usage.prompt_tokens >= 5
    pieces = [c.choices[0].text for c in oai.completions.create(model="tang", prompt="床前明月光", max_tokens=12,
                                                               seed=5, stream=True) if c.choices]
    assert "".join(pieces) == text  # the stream is the same text, piece by piece
    assert len([p for p in pieces if p]) > 1

    started = time.perf_counter()
    first = None
    content = ""
    usage = None
    for chunk in oai.chat.completions.create(model="tang", messages=[{"role": "user", "content": "秋月"}], seed=3,
                                             stream=True, stream_options={"include_usage": True},
                                             extra_body={"form": "七绝"}):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - started
            content += chunk.choices[0].delta.content
    lines = [line for line in content.splitlines() if line.strip()]
    assert len(lines) == 2 and all(len(line) == 16 for line in lines), content  # 七绝: two couplets of 7+7 and marks
    assert usage is not None and usage.completion_tokens > 20
    print(f"first streamed token (warm, 七绝, tang): {first:.3f} s")

    reply = oai.chat.completions.create(model="verse", messages=[{"role": "system", "content": "be brief"},
                                                                 {"role": "user", "content": "winter sea"}],
                                        seed=1, max_tokens=40, extra_body={"form": "haiku"})
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content.strip()
    assert reply.object == "chat.completion"


def test_openai_errors(server, oai):
    with pytest.raises(openai.NotFoundError, match="not served"):
        oai.completions.create(model="/etc", prompt="x")
    with pytest.raises(openai.UnprocessableEntityError, match="temperature"):
        oai.chat.completions.create(model="tang", messages=[{"role": "user", "content": "x"}], temperature=9)
    with pytest.raises(openai.BadRequestError, match="unknown form"):
        oai.chat.completions.create(model="tang", messages=[{"role": "user", "content": "x"}],
                                    extra_body={"form": "nope"})
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        oai.completions.create(model="tang", prompt="x", max_tokens=4000)


# --------------------------------------------------------------------------------------------------
# Artworks, jobs, events, the index


def test_artwork_job_list_detail_files_events(server):
    events: list[tuple[str, dict]] = []
    listening = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client, client.stream("GET", "/v1/events") as stream:
            kind = None
            listening.set()
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind == "artwork_created":
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert listening.wait(30)
    time.sleep(0.2)
    with server.http() as client:
        theme = "秋月 ${oc.env:HOME}"  # never interpolated
        posted = client.post("/v1/artworks", json={"form": "七绝", "theme": theme, "seed": 7, **FAST})
        assert posted.status_code == 202, posted.text
        job = wait_job(client, posted.headers["location"])
        assert job["status"] == "succeeded", job
        art_id = job["artwork_id"]
        thread.join(30)
        assert [k for k, _ in events if k == "artwork_created"] and events[-1][1]["id"] == art_id
        assert [d["status"] for k, d in events if k == "job" and d["id"] == job["id"]] == ["queued", "running"]

        detail = client.get(f"/v1/artworks/{art_id}").json()
        assert detail["manifest"]["intent"]["theme"] == theme and detail["form"] == "七绝"
        assert detail["manifest"]["generation"]["candidates"] == 2
        assert set(detail["files"]) == {"manifest.json", "text.txt", "poem_text/poem.txt", "poem_text/poem.md"}
        folder = server.artworks / art_id / "artwork"
        got = client.get(f"/v1/artworks/{art_id}/files/poem_text/poem.txt")
        assert got.status_code == 200 and got.content == (folder / "poem_text" / "poem.txt").read_bytes()

        today = detail["created"][:10]
        for query in ({"form": "七绝"}, {"theme": "秋月"}, {"q": detail["text"].splitlines()[0][:3]},
                      {"model": "tang"}, {"since": today, "until": today}):
            listed = client.get("/v1/artworks", params=query).json()
            assert art_id in [a["id"] for a in listed["data"]], query
        assert client.get("/v1/artworks", params={"form": "haiku"}).json()["total"] == 0
        assert client.get("/v1/artworks", params={"since": "2999-01-01"}).json()["data"] == []
        assert client.get("/v1/artworks", params={"since": "yesterday"}).status_code == 400
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["jobs"]["succeeded"] >= 1 and health["artworks"] >= 1


@pytest.mark.slow
def test_serve_compile_compiles_the_decoding_step_of_jobs(tmp_path):
    """``serve --compile``: a job's artwork is decoded by the compiled step (its manifest says so) and its
    text is the one the same intent gives without --compile."""
    texts = {}
    for flags in ((), ("--compile",)):
        srv = ServerProcess(tmp_path / f"gallery{len(flags)}", "--model", "tang", "--no-warm-up", *flags)
        try:
            with srv.http() as client:
                posted = client.post("/v1/artworks", json={"form": "七绝", "theme": "秋月", "seed": 5, **FAST})
                assert posted.status_code == 202, posted.text
                job = wait_job(client, posted.headers["location"], timeout=240)
                assert job["status"] == "succeeded", job
                detail = client.get(f"/v1/artworks/{job['artwork_id']}").json()
                assert detail["manifest"]["model"]["compiled"] is bool(flags)
                texts[flags] = detail["text"]
        finally:
            assert srv.stop() == 0
    assert texts[("--compile",)] == texts[()]


def test_artworks_written_by_other_processes_appear(server):
    import shutil

    with server.http() as client:
        made = client.get("/v1/artworks", params={"limit": 1}).json()["data"][0]["id"]
        copy = server.artworks / "2026-11-30" / "12-00-00"  # as `synesthesia run` lays them out
        shutil.copytree(server.artworks / made, copy, ignore=shutil.ignore_patterns(".synesthesia.lock"))
        deadline = time.time() + 30
        while time.time() < deadline:
            if client.get("/v1/artworks/2026-11-30~12-00-00").status_code == 200:
                break
            time.sleep(0.5)
        detail = client.get("/v1/artworks/2026-11-30~12-00-00").json()
        assert detail["text"] == client.get(f"/v1/artworks/{made}").json()["text"]
        assert client.get("/v1/artworks/2026-11-30~12-00-00/files/text.txt").status_code == 200


def test_intents_are_checked_like_the_cli(server):
    with server.http() as client:
        cases = [({"form": "七绝", "hydra": {"run": {"dir": "/tmp"}}}, 422, "hydra"),
                 ({"form": "七绝", "model": "/etc"}, 404, "not served"),
                 ({"form": "七绝", "generation": {"candidates": 99}}, 422, "candidates"),
                 ({"form": "七绝", "options": {"midi": {"soundfont": "/etc/passwd"}}}, 422, "cannot be set"),
                 ({"form": "七绝", "model_generator": "hf"}, 422, "model_generator"),
                 ({"form": "nope"}, 400, "unknown form"),
                 ({"form": "七绝", "renderers": ["nope"]}, 400, "unknown renderer"),
                 ({"form": "七绝", "options": {"midi": {"tempo": 5}}}, 400, "renderer.midi.tempo"),
                 ({"form": "七绝", "theme": "x" * 300}, 422, "theme")]
        for body, status, words in cases:
            answer = client.post("/v1/artworks", json=body)
            assert answer.status_code == status, (body, answer.text)
            message = answer.json()["error"]["message"]
            assert words in message and "\n" not in message, message
        assert client.post("/v1/artworks", content=b"x" * 100_000,
                           headers={"content-type": "application/json"}).status_code == 413
        assert client.post("/v1/artworks", content=b'{"form": "haiku"}',
                           headers={"content-type": "text/plain"}).status_code == 415
        assert client.get("/health", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding


def test_files_cannot_leave_the_artworks_folder(server, tmp_path):
    with server.http() as client:
        posted = client.post("/v1/artworks", json={"form": "haiku", "theme": "sea", **FAST})
        art_id = wait_job(client, posted.headers["location"])["artwork_id"]
    folder = server.artworks / art_id / "artwork"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0", encoding="utf-8")
    (folder / "poem_text" / "poem.md").unlink()
    (folder / "poem_text" / "poem.md").symlink_to(secret)  # a listed file replaced by a symlink
    (folder / "link.txt").symlink_to("/etc/passwd")
    base = f"/v1/artworks/{art_id}/files/"
    assert server.raw_get(base + "poem_text/poem.txt") == 200
    for path in ["../../../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/manifest.json",
                 "%2Fetc%2Fpasswd", "/etc/passwd", "poem_text/../../text.txt", "poem_text/%2e%2e/text.txt",
                 "poem_text/poem.md", "link.txt", "poem_text\\..\\text.txt", "text.txt%00.png", "./text.txt"]:
        assert server.raw_get(base + path) in {404, 400}, path
    for path in ["/v1/artworks/..%2F..%2Fetc/files/passwd", f"/v1/artworks/{art_id}%2F..%2F../files/text.txt",
                 "/v1/artworks/../../etc/passwd", "/static/../../../etc/passwd"]:
        assert server.raw_get(path) in {404, 400}, path


# --------------------------------------------------------------------------------------------------
# Security, the queue, shutdown, the index rebuilt


def test_bind_beyond_loopback_needs_a_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SYNESTHESIA_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "synesthesia", "serve", "--host", "0.0.0.0", "--artworks",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--api-key" in done.stderr, done.stderr


@pytest.mark.slow
def test_key_queue_full_shutdown_and_rebuilt_index(tmp_path):
    srv = ServerProcess(tmp_path / "g", "--api-key", "s3cret", "--queue-size", "1", "--model", "tang",
                        "--no-warm-up")
    try:
        with srv.http() as client:
            intent = {"form": "七绝", "theme": "春雨", **FAST}
            assert client.post("/v1/artworks", json=intent).status_code == 401
            assert client.post("/v1/artworks", json=intent, headers={"authorization": "Bearer nope"}).status_code == 401
            oai = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
            assert [m.id for m in oai.models.list()] == ["tang"]
            assert oai.completions.create(model="tang", prompt="春", max_tokens=4, seed=1).choices[0].text
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=srv.url + "/v1", api_key="bad", max_retries=0).completions.create(
                    model="tang", prompt="春", max_tokens=4)
            with pytest.raises(openai.NotFoundError):
                oai.completions.create(model="verse", prompt="x", max_tokens=4)
            assert client.post("/v1/artworks", json={"form": "haiku", **FAST},
                               headers={"x-api-key": "s3cret"}).status_code == 404  # auto picks verse: not served
            auth = {"authorization": "Bearer s3cret"}
            answers = [client.post("/v1/artworks", json={**intent, "seed": i}, headers=auth) for i in range(6)]
            accepted = [a.json() for a in answers if a.status_code == 202]
            refused = [a for a in answers if a.status_code == 429]
            assert refused and len(accepted) >= 2, [a.status_code for a in answers]
            assert int(refused[0].headers["retry-after"]) >= 1
            assert all(wait_job(client, j["url"])["status"] == "succeeded" for j in accepted)
            # the job in hand at SIGTERM is finished (grace), not cut: a complete artwork
            last = client.post("/v1/artworks", json={"form": "七绝", "theme": "江雪", "seed": 9}, headers=auth).json()
            time.sleep(0.3)
        assert srv.stop() == 0
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    root = tmp_path / "g"
    (root / ".synesthesia-index.sqlite").unlink()  # deleted: rebuilt from the manifests
    for extra in root.glob(".synesthesia-index.sqlite-*"):
        extra.unlink()
    srv = ServerProcess(root, "--model", "tang", "--no-warm-up", "--no-preload")
    try:
        with srv.http() as client:
            listed = client.get("/v1/artworks", params={"limit": 100}).json()
            ids = {a["id"] for a in listed["data"]}
            assert {j["id"] for j in accepted} <= ids and last["id"] in ids
            manifest = client.get(f"/v1/artworks/{last['id']}").json()["manifest"]
            assert len(manifest["renderers"]) >= 5  # the default renderers, every one
            folder = root / last["id"] / "artwork"
            from synesthesia.pipeline import sha256_file

            assert all(sha256_file(folder / name) == digest for name, digest in manifest["files"].items())
            assert not list(root.glob("*/.artwork-staging-*"))
    finally:
        assert srv.stop() == 0


def test_shutdown_abandons_cleanly_and_ends_event_streams(tmp_path):
    root = tmp_path / "g"
    srv = ServerProcess(root, "--model", "tang", "--no-warm-up", "--grace", "0")
    ended = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as client, client.stream("GET", "/v1/events") as stream:
            for _ in stream.iter_lines():
                pass
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    with srv.http() as client:
        slow = {"form": "七绝", "theme": "江雪", "generation": {"candidates": 16, "max_attempts": 5}}
        jobs = [client.post("/v1/artworks", json={**slow, "seed": i}).json() for i in range(3)]
        while client.get(jobs[0]["url"]).json()["status"] == "queued":
            time.sleep(0.02)
    started = time.time()
    assert srv.stop() == 0 and time.time() - started < 30
    assert ended.wait(5)  # the open event stream was closed, not left hanging
    from synesthesia.server.index import ArtworkIndex

    index = ArtworkIndex(root)
    states = [index.load_job(j["id"]) for j in jobs]
    index.close()
    assert [s["status"] for s in states[1:]] == ["abandoned", "abandoned"]  # queued: never started
    assert states[0]["status"] in {"abandoned", "succeeded"}, states[0]
    print("job in hand at SIGTERM with --grace 0:", states[0]["status"], states[0]["error"])
    for state in states:
        folder = root / state["id"]
        if state["status"] == "succeeded":
            assert (folder / "artwork" / "manifest.json").is_file()
        else:
            assert state["error"] and not (folder / "artwork").exists()
        assert not list(folder.glob(".artwork-staging-*")) if folder.exists() else True


@pytest.mark.slow
def test_index_of_ten_thousand_artworks(tmp_path):
    from synesthesia.server.index import ArtworkIndex

    root = tmp_path / "big"
    forms = ["七绝", "haiku", "sonnet", "五律"]
    for i in range(10_000):
        art = root / f"a{i:05d}" / "artwork"
        art.mkdir(parents=True)
        manifest = {"created": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:{i % 60:02d}+00:00",
                    "intent": {"form": forms[i % 4], "language": "zh" if i % 2 == 0 else "en",
                               "theme": f"theme {i % 97}", "title": ""},
                    "model": {"name": "tang" if i % 2 == 0 else "verse"}, "seed": i, "revision": 1,
                    "text": f"line {i} of a poem\nsecond line {i * 7}", "validation": {"ok": True},
                    "files": {"text.txt": "0"}}
        (art / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    index = ArtworkIndex(root)
    started = time.perf_counter()
    assert index.sync()["added"] == 10_000
    rebuild = time.perf_counter() - started
    timings, cpu_ms = {}, {}
    for name, query in {"newest 50": {}, "all 10,000": {"limit": 10_000}, "text": {"q": "second line 6993"},
                        "theme+form": {"theme": "theme 42", "form": "七绝"}, "model+dates": {
                            "model": "tang", "since": "2026-03-01", "until": "2026-03-31"}}.items():
        for _ in range(3):  # the best of 3: one CI run's "all 10,000" took 1.44 s once (53-63 ms in three reruns)
            started, cpu = time.perf_counter(), time.process_time()
            result = index.search(**query)
            timings[name] = min(timings.get(name, float("inf")), (time.perf_counter() - started) * 1000)
            # what the index costs, whatever else runs
            cpu_ms[name] = min(cpu_ms.get(name, float("inf")), (time.process_time() - cpu) * 1000)
        assert result["data"], name
    assert len(index.search(limit=10_000)["data"]) == 10_000
    assert "a00999" in [a["id"] for a in index.search(q="second line 6993")["data"]]
    print(f"rebuild 10,000: {rebuild:.2f} s; " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
    assert cpu_ms["newest 50"] < 50 and cpu_ms["text"] < 200 and cpu_ms["all 10,000"] < 1000, cpu_ms
    index.close()
