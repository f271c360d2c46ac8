"""``synesthesia batch INTENTS.jsonl``: many artworks, one intent per line, through the configured Hydra launcher.

A batch is a Hydra sweep over the intents' keys, so any launcher runs it: the basic one (in this process, one
after another), ``hydra/launcher=joblib`` (local processes), ``hydra/launcher=ray`` (a Ray cluster, local or
remote), ``hydra/launcher=submitit_local`` / ``submitit_slurm`` (Slurm). Its folder::

    OUT/<key>/intent.json              the intent, as read from its line (written before the launch)
    OUT/<key>/artwork/...              the artwork (see ``synesthesia.pipeline``), or
    OUT/<key>/error.json               why this intent failed (one line), retried by the next run
    OUT/index.jsonl, OUT/index.csv     every line of the file: its key, status, artwork or error

``<key>`` is the intent's ``id``, or a hash of the intent itself, so a second run of the same file skips every
intent whose artwork is there (found by its manifest) and runs the rest: a batch resumes wherever it stopped.

Workers load each model once (``process_generators``), not once per job; a sweep (``synesthesia run -m``)
reuses them the same way. ``SweepProgress`` (a Hydra callback, ``conf/config.yaml``) shows a progress bar over
the jobs of every sweep and batch, whatever the launcher: each finished job leaves a marker the main process
counts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import click

from synesthesia.errors import SynesthesiaError
from synesthesia.fileio import write_atomic, write_json_atomic

INTENT_FILE = "intent.json"
FAILURE_FILE = "error.json"
INDEX_JSONL = "index.jsonl"
INDEX_CSV = "index.csv"
PROGRESS_DIR = ".progress"  # one marker per finished job of the current launch: what the progress bar counts
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --------------------------------------------------------------------------------------------------
# Models loaded once per worker process


_GENERATORS = None


def process_generators():
    """This process's ``GeneratorCache``: a worker (the batch's own process, a joblib or Ray worker) loads a
    model for its first job and reuses it for every later one."""
    global _GENERATORS
    if _GENERATORS is None:
        from synesthesia.pipeline import GeneratorCache

        _GENERATORS = GeneratorCache()
    return _GENERATORS


# --------------------------------------------------------------------------------------------------
# Reading intents


def _intent_model():
    from pydantic import BaseModel, ConfigDict

    class Intent(BaseModel):
        """One line of an intents file. Fields left out keep the config's defaults (``synesthesia run --cfg job``)."""

        model_config = ConfigDict(extra="forbid", strict=True)
        id: Optional[str] = None  # the artwork's folder name in the batch (default: a hash of the intent)
        form: Optional[str] = None
        theme: Optional[str] = None
        prompt: Optional[str] = None
        title: Optional[str] = None
        seed: Optional[int] = None
        form_options: Optional[dict[str, Any]] = None
        # Any other setting, by its dotted name: {"model.name": "tang", "generation.candidates": 4,
        # "renderer.poem_png.width": 800, "pipeline.renderers": ["poem_text", "midi"]}
        options: Optional[dict[str, Any]] = None

    return Intent


class Entry:
    """A good line: its number, its key (folder name) and the intent (only the fields it gave)."""

    def __init__(self, line: int, key: str, intent: dict[str, Any]) -> None:
        self.line, self.key, self.intent = line, key, intent


def intent_key(intent: dict[str, Any]) -> str:
    """The intent's ``id``, or the first 16 hex digits of the SHA-256 of its canonical JSON."""
    if intent.get("id"):
        return str(intent["id"])
    canonical = json.dumps(intent, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def read_intents(path: Path) -> tuple[list[Entry], list[tuple[int, str]]]:
    """Good lines as entries; bad ones as (line number, one-line reason). Blank lines and ``#`` comments are skipped."""
    from pydantic import ValidationError

    Intent = _intent_model()
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SynesthesiaError(f"{path}: no such file; give a JSONL file with one intent per line") from None
    except IsADirectoryError:
        raise SynesthesiaError(f"{path} is a folder; give a JSONL file with one intent per line") from None
    entries: list[Entry] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.append((number, "not UTF-8 text; save the file as UTF-8"))
            continue
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append((number, f"not JSON ({exc.msg} at column {exc.colno}); write one JSON object per line"))
            continue
        if not isinstance(data, dict):
            problems.append((number, 'not a JSON object; write e.g. {"form": "haiku", "theme": "winter sea"}'))
            continue
        try:
            intent = Intent.model_validate(data).model_dump(exclude_none=True)
        except ValidationError as exc:
            fields = ", ".join(Intent.model_fields)
            problems.append((number, "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'line'}: "
                + (f"unknown field (fields: {fields})" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors())))
            continue
        if "id" in intent and not _KEY.fullmatch(intent["id"]):
            problems.append((number, f"id '{intent['id']}' is not a folder name: use letters, digits, '.', '_' "
                                     "or '-' (at most 64)"))
            continue
        key = intent_key(intent)
        if key in seen:
            problems.append((number, f"the same {'id' if 'id' in intent else 'intent'} as line {seen[key]} "
                                     "(made once; give it another seed or id to make it twice)"))
            continue
        seen[key] = number
        entries.append(Entry(number, key, intent))
    return entries, problems


def _escape(value: Any) -> Any:
    """A user's ``${…}`` stays text, never an interpolation (OmegaConf's escape), in strings at any depth."""
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def intent_config(cfg: Any, intent: dict[str, Any]) -> dict[str, Any]:
    """The composed config (a DictConfig) with the intent's fields and options set, checked by the schema:
    an unknown setting or a value of the wrong type is a ConfigError (one line)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from synesthesia.app import hydra_error_line
    from synesthesia.errors import ConfigError

    nested: dict[str, Any] = {k: v for k, v in intent.items() if k not in ("id", "options")}
    for dotted, value in (intent.get("options") or {}).items():
        node = nested
        *parents, last = str(dotted).split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"options: '{dotted}' sets inside '{part}', which the intent already gives a value")
        node[last] = value
    try:
        OmegaConf.resolve(cfg)  # the config's own interpolations, before any user value joins it
        merged = OmegaConf.merge(cfg, _escape(nested))
        return dict(OmegaConf.to_container(merged, resolve=True))  # type: ignore[arg-type]
    except OmegaConfBaseException as exc:
        if isinstance(exc, ConfigKeyError) and getattr(exc, "full_key", None):
            raise ConfigError(f"unknown setting '{exc.full_key}'; `synesthesia run --cfg job` lists the settings"
                              ) from None
        line = hydra_error_line(exc)
        key = getattr(exc, "full_key", None)
        raise ConfigError(line if not key or line.startswith(key) else f"{key}: {line}") from None


# --------------------------------------------------------------------------------------------------
# The job (a Hydra task function: runs wherever the launcher puts it)


def _job_log(run_dir: Path):
    """A batch job's notes go to its folder's ``app.log`` (Hydra's file handler), not to the terminal,
    where the progress bar is."""
    import logging

    logger = logging.getLogger("synesthesia.batch")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return logger.info


def batch_job(cfg: Any) -> Optional[str]:
    """Make the artwork of one intent of a batch (``cfg.intent`` names its folder, which holds ``intent.json``);
    record a failure there. Never raises for a bad intent: one failed job does not stop the others."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from synesthesia.pipeline import run_pipeline
    from synesthesia.plugins import get_registry

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log = _job_log(run_dir)
    try:
        with open_dict(cfg):
            cfg.pop("intent")  # the folder's name (hydra.sweep.subdir), not a setting
        intent = json.loads((run_dir / INTENT_FILE).read_text(encoding="utf-8"))
        config = intent_config(cfg, intent)
        artwork = run_pipeline(config, run_dir, registry=get_registry(), log=log, generators=process_generators())
    except Exception as exc:  # noqa: BLE001 - recorded in the folder and the index, never lost
        if os.environ.get("SYNESTHESIA_DEBUG") == "1":
            raise
        message = str(exc) if isinstance(exc, SynesthesiaError) else f"{type(exc).__name__}: {exc}"
        message = " ".join(message.split()) or type(exc).__name__
        log(f"Error: {message}")
        write_json_atomic(run_dir / FAILURE_FILE, {"error": message, "type": type(exc).__name__,
                                                   "pid": os.getpid()})
        return None
    log(f"artwork: {artwork.path}")
    return str(artwork.path)


# --------------------------------------------------------------------------------------------------
# Progress over the jobs of a sweep or batch, whatever the launcher


def _sweep_total(config: Any) -> Optional[int]:
    """How many jobs the basic sweeper makes of the command line's overrides (None for another sweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    if not str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith("BasicSweeper"):
        return None
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))


_BARS: dict[str, tuple[threading.Event, threading.Thread]] = {}


class SweepProgress:
    """A Hydra callback: a progress bar (on stderr) over a sweep's jobs. Each job, in whatever process or
    machine runs it, leaves ``SWEEP_DIR/.progress/<job>`` when it ends; the main process counts them."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = float(interval)

    # The rest of Hydra's callback interface (hydra.experimental.callback.Callback, not imported: `--help` stays fast)
    def on_run_start(self, config: Any, **kwargs: Any) -> None: ...
    def on_run_end(self, config: Any, **kwargs: Any) -> None: ...
    def on_job_start(self, config: Any, **kwargs: Any) -> None: ...
    def on_compose_config(self, config: Any, **kwargs: Any) -> None: ...

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        import shutil

        folder = Path(str(config.hydra.sweep.dir)) / PROGRESS_DIR
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()
        thread = threading.Thread(target=self._show, args=(folder, _sweep_total(config), stop), daemon=True)
        _BARS[str(folder)] = (stop, thread)
        thread.start()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        ok = job_return.status == JobStatus.COMPLETED and job_return._return_value is not None
        folder = Path(str(config.hydra.sweep.dir)) / PROGRESS_DIR
        write_atomic(folder / f"{config.hydra.job.num}", "ok" if ok else "failed")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        stop, thread = _BARS.pop(str(Path(str(config.hydra.sweep.dir)) / PROGRESS_DIR), (None, None))
        if stop is not None:
            stop.set()
            thread.join(timeout=5)

    def _show(self, folder: Path, total: Optional[int], stop: threading.Event) -> None:
        from tqdm import tqdm

        with tqdm(total=total, unit="job", desc="sweep", file=sys.stderr, dynamic_ncols=True,
                  disable=os.environ.get("SYNESTHESIA_PROGRESS") == "0") as bar:
            while True:
                done = stop.wait(self.interval)
                try:
                    states = [p.read_text(encoding="utf-8") for p in folder.iterdir() if not p.name.startswith(".")]
                except OSError:
                    states = []
                if len(states) != bar.n:  # redrawn when a job ends, not on every look
                    bar.n = len(states)
                    bar.set_postfix(failed=states.count("failed"), refresh=False)
                    bar.refresh()
                if done:
                    return


# --------------------------------------------------------------------------------------------------
# The batch


def _status(entry: Entry, out: Path, skipped: set[str]) -> dict[str, Any]:
    """One row of the index, from what the intent's folder holds now."""
    from synesthesia.pipeline import ARTWORK_DIR, MANIFEST_FILE

    folder = out / entry.key
    row: dict[str, Any] = {"line": entry.line, "key": entry.key, "form": entry.intent.get("form", ""),
                           "theme": entry.intent.get("theme", ""), "seed": entry.intent.get("seed", ""),
                           "status": "failed", "new": entry.key not in skipped, "artwork": "", "valid": "",
                           "seconds": "", "error": ""}
    manifest_path = folder / ARTWORK_DIR / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        row.update(status="ok", artwork=str(manifest_path.parent), form=manifest.get("intent", {}).get("form", ""),
                   seed=manifest.get("seed", ""), valid=bool((manifest.get("validation") or {}).get("ok")),
                   seconds=(manifest.get("timings") or {}).get("total", ""))
        return row
    try:
        row["error"] = json.loads((folder / FAILURE_FILE).read_text(encoding="utf-8"))["error"]
    except (OSError, ValueError, KeyError, TypeError):
        row["error"] = ("no result: the job did not finish (its worker was lost or the batch was stopped); "
                        "run the batch again to retry it")
    return row


def write_index(out: Path, rows: list[dict[str, Any]]) -> None:
    """``index.jsonl`` and ``index.csv``, written atomically, in the order of the file's lines."""
    rows = sorted(rows, key=lambda r: r["line"])
    write_atomic(out / INDEX_JSONL, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    buffer = io.StringIO()
    fields = ["line", "key", "status", "new", "form", "theme", "seed", "valid", "seconds", "artwork", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / INDEX_CSV, buffer.getvalue())


def run_batch(intents: Path, out: Path, overrides: list[str], *, echo=print) -> list[dict[str, Any]]:
    """Run every intent of ``intents`` not yet made in ``out`` through the configured launcher; write the index.
    Returns its rows. Bad lines are echoed (one line each) and indexed; the other intents go on."""
    from synesthesia.app import run_hydra_app
    from synesthesia.config import _quote
    from synesthesia.pipeline import ARTWORK_DIR, MANIFEST_FILE, RunLock

    entries, problems = read_intents(intents)
    if not entries and not problems:
        raise SynesthesiaError(f"{intents} holds no intent; write one JSON object per line, e.g. "
                               '{"form": "haiku", "theme": "winter sea", "seed": 1}')
    for number, reason in problems:
        echo(f"{intents}:{number}: {reason}; skipped")
    out = Path(out).absolute()
    with RunLock(out):  # one batch at a time in a folder
        done = {e.key for e in entries if (out / e.key / ARTWORK_DIR / MANIFEST_FILE).is_file()}
        pending = [e for e in entries if e.key not in done]
        if done:
            echo(f"{len(done)} of {len(entries)} artworks already in {out}; making the other {len(pending)}")
        for entry in pending:
            (out / entry.key / FAILURE_FILE).unlink(missing_ok=True)
            write_json_atomic(out / entry.key / INTENT_FILE, entry.intent)
        failure = None
        if pending:
            argv = ["-m", f"hydra.sweep.dir={_quote(str(out))}", "hydra.sweep.subdir=${intent}",
                    "+intent=" + ",".join(_quote(e.key) for e in pending)]
            if not any(o.startswith("hydra/hydra_logging=") for o in overrides):
                argv.append("hydra/hydra_logging=disabled")  # no line per job: the progress bar counts them
            try:
                run_hydra_app(argv + list(overrides), task=batch_job)
            except SynesthesiaError as exc:  # a launcher that gave up (a Ray task out of retries): index anyway
                failure = exc
        rows = [_status(e, out, done) for e in entries]
        rows += [{"line": n, "key": "", "status": "bad line", "new": True, "error": reason} for n, reason in problems]
        write_index(out, rows)
    if failure is not None:
        echo(f"note: the launcher stopped early: {failure}")
    return rows


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("intents", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="The batch's folder (default: batches/<INTENTS' name>); a second run resumes there.")
def batch(intents: Path, overrides: tuple[str, ...], out: Optional[Path]) -> None:
    """Make an artwork for every line of INTENTS (JSONL: {"form": "haiku", "theme": "winter sea", "seed": 3,
    "options": {"model.name": "verse"}}) through the configured Hydra launcher, with a progress bar.

    OVERRIDES apply to every intent: model.name=tang generation.candidates=4, and the launcher:
    hydra/launcher=joblib (local processes), hydra/launcher=ray (a local Ray cluster, started for the batch),
    hydra/launcher=ray_cluster hydra.launcher.ray.init.address=HOST:PORT (a running Ray cluster),
    hydra/launcher=submitit_slurm (Slurm). A second run of the same file skips the artworks already made.
    OUT/index.jsonl and OUT/index.csv list every line's artwork or failure."""
    from synesthesia.config import prepare_override

    out = out if out is not None else Path("batches") / intents.stem
    rows = run_batch(intents, out, [prepare_override(o, sweep=False) for o in overrides],
                     echo=lambda m: click.echo(m, err=True))
    made = sum(r["status"] == "ok" and r["new"] for r in rows)
    kept = sum(r["status"] == "ok" and not r["new"] for r in rows)
    failed = [r for r in rows if r["status"] != "ok"]
    click.echo(f"{made} artworks made, {kept} already there, {len(failed)} failed: {Path(out) / INDEX_CSV}")
    for row in [r for r in failed if r["status"] == "failed"][:5]:  # bad lines were named already
        click.echo(f"  line {row['line']}: {row['error']}", err=True)
    if failed:
        raise SynesthesiaError(f"{len(failed)} of {len(rows)} lines made no artwork (named in "
                               f"{Path(out) / INDEX_CSV}); fix them or run the same command again to retry")
