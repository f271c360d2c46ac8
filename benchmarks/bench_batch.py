"""Batches of artworks per launcher: `synesthesia batch` over the same intents, one launcher at a time.

    .venv/bin/python benchmarks/bench_batch.py [--n 200] [--workers 2] [--launchers basic,joblib,ray,ray_cluster]
                                               [--renderers all]

Each launcher makes the same ``--n`` intents (haiku and 七绝/五绝 on the shipped ``verse`` and ``tang`` models, the
default candidates, every renderer unless ``--renderers``) into a fresh folder, through the real CLI:

- ``basic``: Hydra's own launcher, in the batch's process, one artwork after another (the sequential batch);
- ``joblib``: ``hydra/launcher=joblib`` with ``--workers`` local processes;
- ``ray``: ``hydra/launcher=ray`` with ``--workers`` CPUs: a local Ray cluster started by the batch (counted);
- ``ray_cluster``: ``hydra/launcher=ray_cluster`` on a cluster of ``--workers`` CPUs started before (not counted).

Printed per launcher: wall seconds, artworks per minute, the speed-up over ``basic``, the seconds until the first
artwork, the mean seconds inside the pipeline per artwork (the manifests' ``timings.total``), and the overhead per
artwork: (workers × wall − Σ pipeline seconds) / n, i.e. worker time not spent making artworks (start-up, model
loads, Hydra's per-job set-up, scheduling, idle workers). Every launcher must make all n artworks. The CPU model
and the load average are printed with the table; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

INTENTS = [("haiku", "winter sea"), ("七绝", "秋月"), ("haiku", "harbor at dawn"), ("五绝", "山居"),
           ("haiku", "autumn moon"), ("七绝", "春江")]
# Ray's token authentication (on by default), with a token of this run's own: ~/.ray is neither read nor written.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def write_intents(path: Path, n: int) -> None:
    lines = [json.dumps({"form": INTENTS[i % len(INTENTS)][0], "theme": INTENTS[i % len(INTENTS)][1], "seed": i},
                        ensure_ascii=False) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_ray(workers: int, temp: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             f"--num-cpus={workers}", f"--port={port}", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    for line in head.stdout:  # type: ignore[union-attr]
        if "ray start --address=" in line:
            address = line.split("--address=")[1].strip().strip("'\x1b[0-9;m")
        if "Ray runtime started" in line:
            break
    return head, address


def stop_ray(head: subprocess.Popen, temp: str) -> None:
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    for proc in Path("/proc").iterdir():  # what the head started in sessions of their own
        try:
            if proc.name.isdigit() and temp in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue
    shutil.rmtree(temp, ignore_errors=True)


def run(launcher: str, intents: Path, out: Path, workers: int, renderers: str, address: str | None) -> dict:
    args = [sys.executable, "-m", "synesthesia", "batch", str(intents), "--out", str(out)]
    if renderers != "all":
        args.append(f"pipeline.renderers=[{renderers}]")
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"]
    elif launcher == "ray":
        args += ["hydra/launcher=ray", f"+hydra.launcher.ray.init.num_cpus={workers}"]
    elif launcher == "ray_cluster":
        args += ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    first = None
    while proc.poll() is None:
        if first is None and (out / ".progress").is_dir() and any((out / ".progress").iterdir()):
            first = time.perf_counter() - started
        time.sleep(0.1)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    made = [r for r in rows if r["status"] == "ok"]
    if proc.returncode != 0 or len(made) != len(rows):
        sys.exit(f"{launcher}: {len(made)} of {len(rows)} artworks (exit {proc.returncode}): {stderr[-1500:]}")
    inside = sum(float(r["seconds"]) for r in made)
    n, w = len(made), (1 if launcher == "basic" else workers)
    return {"launcher": launcher, "workers": w, "wall": wall, "per_min": 60 * n / wall, "first": first or wall,
            "inside": inside / n, "overhead": (w * wall - inside) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--launchers", default="basic,joblib,ray,ray_cluster")
    parser.add_argument("--renderers", default="all", help="all, or a comma list (poem_text,midi)")
    o = parser.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench_batch"))
    intents = root / "intents.jsonl"
    write_intents(intents, o.n)
    results = []
    for launcher in o.launchers.split(","):
        head, address, temp = None, None, None
        if launcher == "ray_cluster":
            temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
            head, address = start_ray(o.workers, temp)
        try:
            print(f"{launcher}: {o.n} artworks ...", file=sys.stderr, flush=True)
            results.append(run(launcher, intents, root / launcher, o.workers, o.renderers, address))
        finally:
            if head is not None and temp is not None:
                stop_ray(head, temp)
    base = next((r for r in results if r["launcher"] == "basic"), None)
    print(f"\nsynesthesia batch: {o.n} intents (haiku, 七绝, 五绝; renderers: {o.renderers}) per launcher")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average (1, 5, 15 min) before: "
          + ", ".join(f"{x:.1f}" for x in load_before))
    print(f"{'launcher':<12} {'workers':>7} {'wall s':>8} {'art/min':>8} {'vs basic':>8} {'first s':>8} "
          f"{'inside s':>9} {'overhead s':>10}")
    for r in results:
        ratio = f"{r['per_min'] / base['per_min']:.2f}x" if base else "-"
        print(f"{r['launcher']:<12} {r['workers']:>7} {r['wall']:>8.1f} {r['per_min']:>8.1f} {ratio:>8} "
              f"{r['first']:>8.1f} {r['inside']:>9.2f} {r['overhead']:>10.2f}")
    print("load average at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
