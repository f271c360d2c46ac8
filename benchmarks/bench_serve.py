"""Load on ``synesthesia serve``: bounded concurrency on loopback, mixed chat completions and artwork jobs.

    .venv/bin/python benchmarks/bench_serve.py [--url http://127.0.0.1:8000] [--clients 8] [--duration 30]
                                               [--jobs 0.2] [--full-jobs] [--api-key KEY] [--warm 5]

Without ``--url`` it starts its own ``synesthesia serve --port 0`` (shipped models, a temporary artworks
folder, warm-up on) and stops it at the end with SIGTERM. ``--clients`` threads loop for ``--duration``
seconds; each request is an artwork job (``POST /v1/artworks``, share ``--jobs``) or else a streamed chat
completion through the official ``openai`` client (a 七绝 on ``tang`` or a haiku on ``verse``). Jobs use
two candidates and the text renderers unless ``--full-jobs`` (every renderer, the default candidates).

First, unless ``--warm 0``, the warm figures on the idle server: ``--warm`` 七绝 artworks with every renderer
and the default candidates, one at a time (seconds until the job is done, over HTTP), and as many first
streamed tokens of a 七绝 chat completion.

Printed: p50/p95 latency and throughput per kind (chat: first token and whole reply; jobs: the POST and the
time until the job ended), errors (any non-2xx except 429, any exception), 429s (a full queue, retried after
``Retry-After``), the server's peak RSS (``/health``), the CPU model. Nothing may be lost: after the run
every accepted job is waited for, and each must end ``succeeded`` with a complete artwork (every file in its
manifest present with its sha256) or as a reported failure; a job that ends otherwise counts as lost.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import openai  # noqa: E402
from machine import cpu_model  # noqa: E402

CHATS = [("tang", "七绝", ["秋月", "江雪", "春雨", "長城", "桃花", "夜泊"]),
         ("verse", "haiku", ["winter sea", "harbor at dawn", "autumn moon", "old bridge", "rain"])]
JOB_THEMES = [("七绝", "秋月"), ("七绝", "春江"), ("haiku", "winter sea"), ("五绝", "山居"), ("sonnet", "the sea")]


def start_server(artworks: Path, api_key: str | None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "synesthesia", "serve", "--port", "0", "--artworks", str(artworks)]
    if api_key:
        args += ["--api-key", api_key]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 180
    for line in proc.stdout:
        sys.stderr.write(line)
        found = re.search(r"synesthesia serve: (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, found.group(1)
        if time.time() > deadline:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def stop_server(proc: subprocess.Popen, folder: tempfile.TemporaryDirectory) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed: no clean stop within 120 s"
    print(f"server stopped: {code}", flush=True)
    folder.cleanup()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def warm_figures(http: httpx.Client, oai: openai.OpenAI, n: int) -> None:
    """One at a time on an idle server: a 七绝 artwork with every renderer (default candidates), and the first
    streamed token of a 七绝 chat completion."""
    artwork, server_side, first = [], [], []
    for i in range(n):
        started = time.perf_counter()
        job = http.post("/v1/artworks", json={"form": "七绝", "theme": "秋月", "seed": 100 + i}).json()
        while job["status"] in ("queued", "running"):
            time.sleep(0.02)
            job = http.get(job["url"]).json()
        if job["status"] != "succeeded":
            raise SystemExit(f"warm artwork failed: {job.get('error')}")
        artwork.append(time.perf_counter() - started)
        server_side.append(float(job["seconds"]))
    renderers = http.get(f"/v1/artworks/{job['artwork_id']}").json()["manifest"]["renderers"]
    for i in range(n):
        started = time.perf_counter()
        with oai.chat.completions.create(model="tang", messages=[{"role": "user", "content": "秋月"}],
                                         stream=True, seed=i, extra_body={"form": "七绝"}) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first.append(time.perf_counter() - started)
                    break
    print(f"\nwarm, one at a time ({n} each; CPU: {cpu_model()}):")
    print(f"  七绝 artwork, {len(renderers)} renderers ({', '.join(renderers)}), default candidates: "
          f"median {statistics.median(artwork):.2f} s to done over HTTP "
          f"(server {statistics.median(server_side):.2f} s), "
          f"min {min(artwork):.2f}, max {max(artwork):.2f}")
    print(f"  first streamed token (七绝 chat, tang): median {statistics.median(first) * 1000:.0f} ms, "
          f"max {max(first) * 1000:.0f} ms")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--jobs", type=float, default=0.2, help="share of requests that are artwork jobs")
    parser.add_argument("--full-jobs", action="store_true", help="jobs with every renderer and default candidates")
    parser.add_argument("--api-key", default=os.environ.get("SYNESTHESIA_API_KEY"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm", type=int, default=5, help="warm figures first: N artworks and N first tokens")
    parser.add_argument("--warm-only", action="store_true", help="only the warm figures, no load")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.duration <= 600:
        raise SystemExit("--clients 1-64, --duration 1-600 s (this is a bounded load test)")

    proc = None
    folder = None
    url = args.url
    if url is None:
        folder = tempfile.TemporaryDirectory(prefix="bench-serve-")
        proc, url = start_server(Path(folder.name), args.api_key)
    if not re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$", url):
        raise SystemExit("this benchmark drives loopback servers only")
    url = url.rstrip("/")
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    http = httpx.Client(base_url=url, timeout=120, headers=headers,
                        limits=httpx.Limits(max_connections=args.clients + 4))
    oai = openai.OpenAI(base_url=url + "/v1", api_key=args.api_key or "none", max_retries=0, timeout=120,
                        http_client=httpx.Client(limits=httpx.Limits(max_connections=args.clients + 4)))

    if args.warm:
        warm_figures(http, oai, args.warm)
        if args.warm_only:
            if proc is not None:
                stop_server(proc, folder)
            return

    lock = threading.Lock()
    stats: dict[str, list[float]] = {"chat first token": [], "chat reply": [], "job POST": []}
    errors: list[str] = []
    refused = [0]
    accepted: dict[str, float] = {}  # job id -> when accepted
    rss: list[float] = []
    stop_at = time.time() + args.duration

    def client(number: int) -> None:
        rng = random.Random(args.seed * 1000 + number)
        while time.time() < stop_at:
            try:
                if rng.random() < args.jobs:
                    form, theme = rng.choice(JOB_THEMES)
                    intent = {"form": form, "theme": theme, "seed": rng.randrange(10**6)}
                    if not args.full_jobs:
                        intent.update(generation={"candidates": 2}, renderers=["poem_text"])
                    started = time.perf_counter()
                    answer = http.post("/v1/artworks", json=intent)
                    took = time.perf_counter() - started
                    if answer.status_code == 202:
                        with lock:
                            stats["job POST"].append(took)
                            accepted[answer.json()["id"]] = time.time()
                    elif answer.status_code == 429:
                        with lock:
                            refused[0] += 1
                        time.sleep(min(5.0, float(answer.headers.get("retry-after", "1"))))
                    else:
                        with lock:
                            errors.append(f"POST /v1/artworks {answer.status_code}: {answer.text[:120]}")
                else:
                    model, form, themes = rng.choice(CHATS)
                    started = time.perf_counter()
                    first = None
                    text = ""
                    for chunk in oai.chat.completions.create(
                            model=model, messages=[{"role": "user", "content": rng.choice(themes)}], stream=True,
                            seed=rng.randrange(10**6), extra_body={"form": form}):
                        if chunk.choices and chunk.choices[0].delta.content:
                            if first is None:
                                first = time.perf_counter() - started
                            text += chunk.choices[0].delta.content
                    total = time.perf_counter() - started
                    with lock:
                        if first is None or not text.strip():
                            errors.append(f"chat {model}: an empty reply")
                        else:
                            stats["chat first token"].append(first)
                            stats["chat reply"].append(total)
            except Exception as exc:  # counted, never fatal
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    def watch_rss() -> None:
        while time.time() < stop_at + 1:
            try:
                rss.append(float(http.get("/health").json()["rss_mb"]))
            except Exception:
                pass
            time.sleep(1.0)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    watcher = threading.Thread(target=watch_rss, daemon=True)
    began = time.time()
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - began

    # Nothing lost: every accepted job ends as a complete artwork or a reported failure.
    outcomes = {"succeeded": 0, "failed": 0, "abandoned": 0, "lost": 0}
    job_times: list[float] = []
    deadline = time.time() + 300
    for job_id, when in accepted.items():
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job.get("status") not in ("queued", "running") or time.time() > deadline:
                break
            time.sleep(0.1)
        status = job.get("status")
        if status == "succeeded":
            detail = http.get(f"/v1/artworks/{job['artwork_id']}").json()
            files = detail["manifest"]["files"]
            complete = all(hashlib.sha256(http.get(f"/v1/artworks/{job['artwork_id']}/files/{name}").content)
                           .hexdigest() == digest for name, digest in files.items())
            outcomes["succeeded" if complete else "lost"] += 1
            if job.get("finished"):
                job_times.append(max(0.0, datetime.datetime.fromisoformat(job["finished"]).timestamp() - when))
        elif status in ("failed", "abandoned") and job.get("error"):
            outcomes[status] += 1
        else:
            outcomes["lost"] += 1
    health = http.get("/health").json()

    print(f"\nbench_serve: {args.clients} clients for {args.duration:.0f} s on {url}, jobs {args.jobs:.0%} "
          f"({'every renderer' if args.full_jobs else '2 candidates, poem_text'}); CPU: {cpu_model()}, "
          f"{os.cpu_count()} cores")
    print(f"{'kind':<18} {'n':>6} {'p50 s':>8} {'p95 s':>8} {'per s':>8}")
    rows = dict(stats)
    rows["job until done"] = job_times
    for kind, values in rows.items():
        print(f"{kind:<18} {len(values):>6} {pct(values, .5):>8.3f} {pct(values, .95):>8.3f} "
              f"{len(values) / elapsed:>8.2f}")
    print(f"errors: {len(errors)}   429 (queue full): {refused[0]}   jobs accepted: {len(accepted)} -> "
          + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
    print(f"server RSS: peak {health['peak_rss_mb']:.0f} MB (getrusage), sampled "
          f"{min(rss or [0]):.0f}-{max(rss or [0]):.0f} MB during the run")
    for line in sorted(set(errors))[:10]:
        print("  error:", line)
    if proc is not None:
        stop_server(proc, folder)
    if errors or outcomes["lost"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
