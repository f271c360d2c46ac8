"""Meaning: do the poems say what the artist asked for? Theme coverage, sameness across themes, filler.

    .venv/bin/python benchmarks/bench_theme.py                      # every form, 30 themes, seeds 0 and 1
    .venv/bin/python benchmarks/bench_theme.py --jobs 1             # in one process (default: 2 workers)
    .venv/bin/python benchmarks/bench_theme.py --quick              # a smoke run of about two minutes
    .venv/bin/python benchmarks/bench_theme.py --label new --json /tmp/new.json
    .venv/bin/python benchmarks/bench_theme.py --compare benchmarks/results/theme_a52ef0b.json /tmp/new.json

Poems are made the way an artist gets them: through the public pipeline (``synesthesia.pipeline.run_pipeline``
with the composed default config, ``pipeline.renderers=[]``, ``generation.candidates`` 8, into a temporary
folder), one artwork per (form, theme, seed). Each model is loaded once per process and reused (the
pipeline's ``load_generator`` is memoised); ``--jobs`` worker processes (one torch thread each) share the
(form, seed) tasks out and make exactly the poems one process would. The themes are fixed lists kept in the repo,
``benchmarks/themes/zh.txt`` and ``benchmarks/themes/en.txt`` (``theme<TAB>related words``, hand-written
for this benchmark, independent of any generator's thesaurus); ``--themes N`` takes the first N.

Per form and row it reports:

- ``any`` / ``all`` (Chinese): share of poems holding at least one / every content character of the theme.
  Characters are compared in simplified spelling (the ``tang`` model writes traditional: 鄉 counts for 乡);
  function characters (之 乎 者 也 不 無 ...) of a theme are not content. ``pair``: among themes of two or
  more characters, share of poems holding two of them side by side as in the theme, within a line
  (长城 as 長城, not 長 in one line and 城 in another; 黄鹤楼 by 黄鹤 or 鹤楼).
- ``word`` / ``+rel`` (English): share of poems holding a content word of the theme (``harbor at dawn`` →
  harbor, dawn), / holding one of those or a related word from the theme file. Plurals in -s/-es count.
- ``plan``: share of planned keywords (``manifest["theme"]["plan"]``, a list of ``{"line": i, "keyword": k}``,
  ``line`` 0-based; read as 1-based when some entry names line n of an n-line poem and none names line 0)
  that landed in their line; ``kw``: share of ``manifest["theme"]["keywords"]`` found anywhere in the poem.
  ``-`` when the manifest has no such key.
- ``ident``: for each form and seed, the share of themes whose poem is identical (after trimming spaces) to
  another theme's poem, pooled over seeds; ``shared``: share of lines also found in another theme's poem.
- ``不`` / ``無`` (Chinese): 不, and 無/无 together, as a share of all Han characters (real Tang: 不 ≈ 2%;
  the goal is 不 ≤ 3%).
- ``dist-2``: distinct bigrams / all bigrams over the row's poems (Chinese: characters within a line;
  English: words within a poem). It grows as samples shrink, so human rows use as many poems as the
  generated row has.
- ``form`` / ``rhyme`` / ``tone`` (Chinese): as in ``bench_poetry.py`` (its ``verse_scores``); ``scheme``
  (English sonnet, limerick): share of poems whose whole rhyme scheme holds
  (``synesthesia_poetry.english.scheme_accuracy == 1.0``, limericks allowing a repeated word);
  ``valid``: the pipeline's verdict (the form's validator) on the chosen text.

Human baselines, from corpora on disk (rows skipped with a note when absent): real Tang poems of the same
form from the npm ``chinese-poetry`` package (``scripts/prepare_corpora.sh tang`` puts it in
``work-data/chinese-poetry/package``; selected as ``bench_poetry.py`` selects its quatrains): for each
theme ``--real-n`` poems drawn at random (the base rate of a theme character in any poem), and the poems
whose title holds a theme character (people writing on the theme). English: windows of consecutive
verse lines of ``../shared/data/tinyshakespeare.txt`` (speaker cues left out), as long as the form.

``--json OUT`` writes the figures and every poem; ``--compare A.json B.json ...`` prints saved runs side by
side; ``--rescore RUN.json`` recomputes a saved run's rows from its poems when a metric changes. The figures
of the release before the meaning work are in ``benchmarks/results/theme_a52ef0b.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
THEMES_DIR = REPO / "benchmarks" / "themes"
DEFAULT_CORPUS = REPO / "work-data" / "chinese-poetry" / "package"
DEFAULT_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
ZH_FORMS = {"五绝": (4, 5), "七绝": (4, 7), "五律": (8, 5), "七律": (8, 7)}
EN_FORMS = {"haiku": (3, None), "limerick": (5, "AABBA"), "sonnet": (14, "ABABCDCDEFEFGG")}
DEFAULT_FORMS = "五绝,七绝,七律,haiku,limerick,sonnet"
QUICK = {"themes": 6, "seeds": "0", "forms": "五绝,七绝,haiku,limerick,sonnet"}

# --------------------------------------------------------------------------------------------------
# Themes


def load_themes(path: Path) -> list[tuple[str, list[str]]]:
    """(theme, related words) per line of a theme file; ``#`` lines and blank lines are skipped."""
    themes = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        theme, _, related = raw.partition("\t")
        themes.append((theme.strip(), [w.strip().lower() for w in related.split(",") if w.strip()]))
    return themes


# --------------------------------------------------------------------------------------------------
# Metrics (pure functions on text; tests/test_bench_theme.py checks them on hand-made poems)

# Function characters: grammatical glue, not what a theme is about.
ZH_FUNCTION = frozenset("之乎者也矣焉哉兮而以於于其與与的了不無无")
ZH_LINE_BREAK = re.compile(r"[，。！？；：、,.!?;:\s]+")
# Function words of English themes, and the few adjectives too common to say anything ("old violin").
EN_STOP = frozenset("a an the at of in on by to and with for from first last old".split())
EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def is_han(ch: str) -> bool:
    return len(ch) == 1 and ("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"
                             or "\U00020000" <= ch <= "\U0002ffff")


@functools.lru_cache(maxsize=65536)
def _simplified(ch: str) -> str:
    import zhconv

    out = zhconv.convert(ch, "zh-hans")
    return out if len(out) == 1 else ch


def zh_norm(text: str) -> str:
    """The text in simplified spelling, character for character (so 故鄉 and 故乡 compare equal)."""
    return "".join(_simplified(ch) if is_han(ch) else ch for ch in text)


def zh_theme_chars(theme: str) -> list[str]:
    return list(dict.fromkeys(ch for ch in zh_norm(theme) if is_han(ch) and ch not in ZH_FUNCTION))


def zh_coverage(text: str, theme: str) -> tuple[bool, bool]:
    """(holds a content character of the theme, holds all of them)."""
    chars = zh_theme_chars(theme)
    present = set(zh_norm(text))
    hits = [ch in present for ch in chars]
    return (any(hits), bool(hits) and all(hits))


def zh_theme_pairs(theme: str) -> list[str]:
    """Adjacent content-character pairs of a theme (长城; 黄鹤, 鹤楼): the theme's words, roughly."""
    chars = [ch for ch in zh_norm(theme) if is_han(ch)]
    return list(dict.fromkeys(a + b for a, b in zip(chars, chars[1:])
                              if a not in ZH_FUNCTION and b not in ZH_FUNCTION))


def zh_pair_kept(text: str, theme: str) -> bool | None:
    """Whether the poem holds two theme characters side by side as in the theme, within a line
    (None for a theme of one character): 长城 written as 長城, not 長 here and 城 there."""
    pairs = zh_theme_pairs(theme)
    if not pairs:
        return None
    lines = [zh_norm(line) for line in zh_lines(text)]
    return any(pair in line for pair in pairs for line in lines)


def zh_lines(text: str) -> list[str]:
    return [part for part in ZH_LINE_BREAK.split(text) if part]


def en_words(text: str) -> list[str]:
    """Lower-cased words, a possessive 's dropped."""
    found = EN_WORD.findall(text.lower().replace("’", "'"))
    return [w[:-2] if w.endswith("'s") else w for w in found]


def en_theme_words(theme: str) -> list[str]:
    return list(dict.fromkeys(w for w in en_words(theme) if w not in EN_STOP))


def en_has_word(words: Iterable[str], target: str) -> bool:
    """Whether ``target`` (or its plural in -s/-es) is among ``words``; a phrase is looked for in order."""
    words = list(words)
    parts = target.lower().split()
    if len(parts) > 1:
        return " ".join(parts) in " ".join(words)
    present = set(words)
    return target in present or target + "s" in present or target + "es" in present


def en_coverage(text: str, theme: str, related: Sequence[str]) -> tuple[bool, bool]:
    """(holds a content word of the theme, holds one of those or a related word)."""
    words = en_words(text)
    own = any(en_has_word(words, w) for w in en_theme_words(theme))
    return own, own or any(en_has_word(words, w) for w in related)


def normalise(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def identical_count(texts: Sequence[str]) -> int:
    """How many of the texts are identical to another one of them."""
    counts = Counter(normalise(t) for t in texts)
    return sum(counts[normalise(t)] > 1 for t in texts)


def shared_lines(poems_lines: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(lines found in another poem of the list, all lines)."""
    owners: dict[str, set[int]] = {}
    for i, lines in enumerate(poems_lines):
        for line in lines:
            owners.setdefault(line.strip(), set()).add(i)
    shared = sum(len(owners[line.strip()] - {i}) > 0 for i, lines in enumerate(poems_lines) for line in lines)
    return shared, sum(len(lines) for lines in poems_lines)


def filler_counts(text: str) -> tuple[int, int, int]:
    """(Han characters, 不, 無/无)."""
    han = [ch for ch in text if is_han(ch)]
    return len(han), han.count("不"), han.count("無") + han.count("无")


def distinct_2(sequences: Iterable[Sequence[Any]]) -> float:
    total, seen = 0, set()
    for seq in sequences:
        pairs = list(zip(seq, seq[1:]))
        total += len(pairs)
        seen.update(pairs)
    return len(seen) / total if total else float("nan")


def zh_bigram_units(texts: Iterable[str]) -> list[list[str]]:
    return [[ch for ch in line if is_han(ch)] for t in texts for line in zh_lines(t)]


def en_bigram_units(texts: Iterable[str]) -> list[list[str]]:
    return [en_words(t) for t in texts]


def poem_lines(text: str, language: str) -> list[str]:
    return zh_lines(text) if language == "zh" else [x.strip() for x in text.splitlines() if x.strip()]


def keyword_in(text: str, keyword: str, language: str) -> bool:
    if language == "zh":
        return bool(keyword) and zh_norm(keyword) in zh_norm(text)
    return en_has_word(en_words(text), keyword.lower())


def plan_landed(text: str, plan: Sequence[dict], language: str) -> tuple[int, int]:
    """(planned keywords found in their planned line, planned keywords)."""
    lines = poem_lines(text, language)
    entries = [(int(e.get("line", -1)), str(e.get("keyword", ""))) for e in plan if isinstance(e, dict)]
    one_based = any(i == len(lines) for i, _ in entries) and not any(i == 0 for i, _ in entries)
    landed = 0
    for i, keyword in entries:
        i -= one_based
        landed += 0 <= i < len(lines) and keyword_in(lines[i], keyword, language)
    return landed, len(entries)


def full_scheme(lines: Sequence[str], scheme: str, limerick: bool) -> bool:
    from synesthesia_poetry import english

    return english.scheme_accuracy(list(lines), scheme, allow_identical=limerick) == 1.0


def _bench_poetry():
    """benchmarks/bench_poetry.py, whose ``verse_scores`` measures form, rhyme and tones."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_poetry

    return bench_poetry


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


# --------------------------------------------------------------------------------------------------
# Summaries of a row


def summarise(poems: list[dict], language: str, form: str) -> dict[str, Any]:
    """The row's figures from its poems (dicts with text, theme, related, seed; generated ones also
    valid, seconds and the manifest's theme section)."""
    texts = [p["text"] for p in poems]
    row: dict[str, Any] = {"form": form, "language": language, "n": len(poems),
                           "themes": len({p["theme"] for p in poems})}
    if language == "zh":
        cov = [zh_coverage(p["text"], p["theme"]) for p in poems]
        row["cov_any"], row["cov_all"] = mean(c[0] for c in cov), mean(c[1] for c in cov)
        kept = [zh_pair_kept(p["text"], p["theme"]) for p in poems]
        row["pair_kept"] = mean(k for k in kept if k is not None)
        han = bu = wu = 0
        for t in texts:
            a, b, c = filler_counts(t)
            han, bu, wu = han + a, bu + b, wu + c
        row["bu"], row["wu"] = ratio(bu, han), ratio(wu, han)
        row["distinct_2"] = distinct_2(zh_bigram_units(texts))
        n_lines, n_chars = ZH_FORMS[form]
        verse_scores = _bench_poetry().verse_scores
        scores = [verse_scores(t, n_lines, n_chars) for t in texts]
        row["form_acc"] = mean(s[0] for s in scores)
        row["rhyme_acc"] = mean(s[1] for s in scores)
        row["tonal_acc"] = mean(s[2] for s in scores)
    else:
        cov = [en_coverage(p["text"], p["theme"], p.get("related", [])) for p in poems]
        row["cov_word"], row["cov_related"] = mean(c[0] for c in cov), mean(c[1] for c in cov)
        row["distinct_2"] = distinct_2(en_bigram_units(texts))
        _, scheme = EN_FORMS[form]
        if scheme:
            row["scheme_full"] = mean(full_scheme(poem_lines(t, "en"), scheme, form == "limerick") for t in texts)
    if any("valid" in p for p in poems):
        row["valid"] = mean(bool(p.get("valid")) for p in poems)
        row["s_per_poem"] = mean(p.get("seconds", float("nan")) for p in poems)
        # Sameness across themes: per seed, pooled.
        ident = total = shared = lines_total = 0
        for seed in sorted({p["seed"] for p in poems}):
            group = [p for p in poems if p["seed"] == seed]
            ident += identical_count([p["text"] for p in group])
            total += len(group)
            s, n = shared_lines([poem_lines(p["text"], language) for p in group])
            shared, lines_total = shared + s, lines_total + n
        row["identical"] = ratio(ident, total)
        row["shared_lines"] = ratio(shared, lines_total)
        # The manifest's keyword plan, where there is one.
        sections = [p.get("manifest_theme") for p in poems]
        plans = [(p["text"], s.get("plan")) for p, s in zip(poems, sections) if isinstance(s, dict) and s.get("plan")]
        if any(isinstance(s, dict) and "plan" in s for s in sections):
            landed = total_plan = 0
            for text, plan in plans:
                a, b = plan_landed(text, plan, language)
                landed, total_plan = landed + a, total_plan + b
            row["plan_landed"] = ratio(landed, total_plan)
        if any(isinstance(s, dict) and "keywords" in s for s in sections):
            found = [keyword_in(p["text"], str(k), language) for p, s in zip(poems, sections)
                     if isinstance(s, dict) for k in (s.get("keywords") or [])]
            row["keywords_found"] = mean(found)
    return row


# --------------------------------------------------------------------------------------------------
# Generated poems, through the public pipeline


def code_under_test() -> dict[str, Any]:
    """Where the imported synesthesia lives, and its git commit (``+dirty`` when core/ or plugins/ differ)."""
    import synesthesia

    root = Path(synesthesia.__file__).resolve().parents[2]
    info: dict[str, Any] = {"root": str(root), "version": getattr(synesthesia, "__version__", "?")}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "core", "plugins", "conf"],
                               capture_output=True, text=True, check=True).stdout.strip()
        info["commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    return info


def base_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed default run config (as ``synesthesia run`` composes it) with no renderers."""
    from omegaconf import OmegaConf

    import synesthesia

    overrides = ["pipeline.renderers=[]", *overrides]
    from synesthesia.config import register_configs

    register_configs()
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    conf_dir = Path(synesthesia.__file__).resolve().parents[2] / "conf"
    if (conf_dir / "config.yaml").is_file():  # a source checkout: its own conf/, not the installed one
        context = initialize_config_dir(config_dir=str(conf_dir), version_base="1.3")
    else:
        context = initialize_config_module(config_module="synesthesia.conf", version_base="1.3")
    with context:
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


class MemoisedLoading:
    """Within the block, ``synesthesia.pipeline.load_generator`` loads each model once and reuses it."""

    def __init__(self) -> None:
        self.loaded: dict[tuple, Any] = {}
        self.load_seconds = 0.0

    def __enter__(self):
        from synesthesia import pipeline

        self._original = pipeline.load_generator

        def load(plan_):
            key = (getattr(plan_.generator, "name", str(plan_.generator)), plan_.model_name, plan_.device,
                   plan_.dtype, plan_.threads)
            if key not in self.loaded:
                t0 = time.perf_counter()
                self.loaded[key] = self._original(plan_)
                self.load_seconds += time.perf_counter() - t0
            elif plan_.threads > 0:
                import torch

                torch.set_num_threads(plan_.threads)
            return self.loaded[key]

        pipeline.load_generator = load
        return self

    def __exit__(self, *exc):
        from synesthesia import pipeline

        pipeline.load_generator = self._original
        return False


def generate_poems(tasks: list[tuple[str, int]], themes: dict[str, list[tuple[str, list[str]]]],
                   config: dict[str, Any], log=print) -> tuple[list[dict], float]:
    """One artwork per theme for each (form, seed) task, through ``run_pipeline``; (poems, load seconds)."""
    from synesthesia.pipeline import run_pipeline
    from synesthesia.plugins import get_registry

    registry = get_registry()
    poems: list[dict] = []
    with MemoisedLoading() as memo, tempfile.TemporaryDirectory(prefix="bench-theme-") as tmp:
        k = 0
        for form, seed in tasks:
            language = "zh" if form in ZH_FORMS else "en"
            started = time.perf_counter()
            for theme, related in themes[language]:
                cfg = copy.deepcopy(config)
                cfg.update(form=form, theme=theme, seed=seed)
                messages: list[str] = []
                stderr = io.StringIO()
                t0 = time.perf_counter()
                with contextlib.redirect_stderr(stderr):
                    artwork = run_pipeline(cfg, Path(tmp) / f"run-{k}", registry=registry, log=messages.append)
                seconds = time.perf_counter() - t0
                k += 1
                manifest = artwork.manifest
                poems.append({
                    "form": form, "language": language, "theme": theme, "related": related, "seed": seed,
                    "text": artwork.text, "valid": bool((manifest.get("validation") or {}).get("ok")),
                    "seconds": round(seconds, 3),
                    "attempts": 1 + max((c.get("attempt", 0) for c in manifest.get("candidates", [])), default=0),
                    "manifest_theme": manifest.get("theme"),
                    "theme_mapping": (manifest.get("model") or {}).get("theme_mapping"),
                    "notes": [m for m in messages + stderr.getvalue().splitlines() if m.strip()],
                })
            log(f"  {form} seed {seed}: {len(themes[language])} poems in {time.perf_counter() - started:.1f} s")
    return poems, memo.load_seconds


# Relative cost of one (form, seed) task, to share the work out between processes (measured on a52ef0b,
# where sonnets and limericks take all three rounds of candidates).
TASK_COST = {"五绝": 8, "七绝": 17, "五律": 12, "七律": 15, "haiku": 9, "limerick": 194, "sonnet": 470}


def share_tasks(tasks: list[tuple[str, int]], jobs: int) -> list[list[tuple[str, int]]]:
    """Tasks in ``jobs`` groups of about equal cost (largest first, each to the least loaded group)."""
    groups: list[list[tuple[str, int]]] = [[] for _ in range(max(1, jobs))]
    loads = [0.0] * len(groups)
    for task in sorted(tasks, key=lambda t: -TASK_COST.get(t[0], 50)):
        i = loads.index(min(loads))
        groups[i].append(task)
        loads[i] += TASK_COST.get(task[0], 50)
    return [g for g in groups if g]


def generate_in_processes(tasks, args, log=print) -> tuple[list[dict], float]:
    """The tasks shared out between ``args.jobs`` worker processes of this script (each loads its models
    once); their poems in task order, as one process would have made them."""
    groups = share_tasks(tasks, args.jobs)
    if len(groups) == 1:
        return None  # type: ignore[return-value]
    with tempfile.TemporaryDirectory(prefix="bench-theme-jobs-") as tmp:
        procs = []
        for i, group in enumerate(groups):
            out = Path(tmp) / f"worker-{i}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--worker-out", str(out),
                       "--worker-tasks", ",".join(f"{f}:{s}" for f, s in group), "--themes", str(args.themes),
                       "--zh-themes", str(args.zh_themes), "--en-themes", str(args.en_themes)]
            for override in args.override:
                command += ["--override", override]
            procs.append((subprocess.Popen(command), out))
        failed = [p.wait() for p, _ in procs]
        if any(failed):
            raise SystemExit(f"bench_theme: a worker process failed (exit codes {failed})")
        found = [json.loads(out.read_text(encoding="utf-8")) for _, out in procs]
    poems = [p for result in found for p in result["poems"]]
    order = {task: i for i, task in enumerate(tasks)}
    poems.sort(key=lambda p: order[(p["form"], p["seed"])])  # stable: themes keep their order
    return poems, sum(result["load_seconds"] for result in found)


# --------------------------------------------------------------------------------------------------
# Human baselines


def real_tang(corpus: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """(title, lines) of real Tang poems per form, selected as bench_poetry.corpus_quatrains selects
    quatrains (Han characters only, equal lines, no duplicates, no files of known errors), 8-line too."""
    import glob

    from synesthesia_poetry import chinese

    by_form: dict[str, list[tuple[str, list[str]]]] = {f: [] for f in ZH_FORMS}
    shapes = {shape: name for name, shape in ZH_FORMS.items()}
    files = sorted(glob.glob(os.path.join(str(corpus), "**", "poet.tang.*.json"), recursive=True))
    files = [f for f in files if "error" not in f and "strains" not in f]
    seen = set()
    for f in files:
        for poem in json.loads(Path(f).read_text(encoding="utf-8")):
            lines = chinese.split_lines("".join(poem.get("paragraphs", [])))
            key = "".join(lines)
            form = shapes.get((len(lines), len(lines[0]) if lines else 0))
            if (form and len({len(x) for x in lines}) == 1 and key not in seen
                    and all(is_han(c) for line in lines for c in line)):
                seen.add(key)
                by_form[form].append((str(poem.get("title", "")), lines))
    return by_form


def real_tang_rows(form: str, pool: list[tuple[str, list[str]]], themes, per_theme: int, n_match: int):
    """Two rows: ``per_theme`` random poems per theme (the base rate), and poems titled with a theme
    character. Figures other than coverage use ``n_match`` poems (the generated row's size)."""
    rows = []
    poems = []
    for theme, _ in themes:
        rng = random.Random(f"{form}|{theme}")
        for _title, lines in rng.sample(pool, min(per_theme, len(pool))):
            poems.append({"theme": theme, "text": "，".join(lines), "seed": 0})
    row = summarise(poems, "zh", form)
    matched = summarise(random.Random(form).sample(poems, min(n_match, len(poems))), "zh", form)
    row.update({k: matched[k] for k in ("distinct_2",)})
    row["source"] = f"real Tang ({per_theme}/theme)"
    rows.append(row)
    titled = []
    for theme, _ in themes:
        chars = zh_theme_chars(theme)
        hits = [p for p in pool if any(ch in zh_norm(p[0]) for ch in chars)]
        rng = random.Random(f"title|{form}|{theme}")
        for _title, lines in rng.sample(hits, min(per_theme, len(hits))):
            titled.append({"theme": theme, "text": "，".join(lines), "seed": 0})
    if titled:
        row = summarise(titled, "zh", form)
        matched = summarise(random.Random(form).sample(titled, min(n_match, len(titled))), "zh", form)
        row["distinct_2"] = matched["distinct_2"]
        row["source"] = "real Tang, titled"
        rows.append(row)
    return rows


SPEAKER_CUE = re.compile(r"^[A-Z][A-Za-z .'-]*:\s*$")


def shakespeare_lines(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip() and not SPEAKER_CUE.match(line.strip())]


def shakespeare_row(form: str, lines: list[str], themes, per_theme: int, n_match: int) -> dict:
    n_lines, _ = EN_FORMS[form]
    poems = []
    for theme, related in themes:
        rng = random.Random(f"{form}|{theme}")
        for _ in range(per_theme):
            start = rng.randrange(0, len(lines) - n_lines)
            poems.append({"theme": theme, "related": related, "text": "\n".join(lines[start:start + n_lines]),
                          "seed": 0})
    row = summarise(poems, "en", form)
    row["distinct_2"] = summarise(random.Random(form).sample(poems, min(n_match, len(poems))), "en",
                                  form)["distinct_2"]
    row["source"] = f"Shakespeare ({n_lines}-line windows)"
    return row


# --------------------------------------------------------------------------------------------------
# Tables


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


ZH_COLUMNS = [("any", "cov_any"), ("all", "cov_all"), ("pair", "pair_kept"), ("plan", "plan_landed"),
              ("kw", "keywords_found"),
              ("ident", "identical"), ("shared", "shared_lines"), ("不", "bu"), ("無", "wu"),
              ("dist-2", "distinct_2"), ("form", "form_acc"), ("rhyme", "rhyme_acc"), ("tone", "tonal_acc"),
              ("valid", "valid"), ("s/poem", "s_per_poem")]
EN_COLUMNS = [("word", "cov_word"), ("+rel", "cov_related"), ("plan", "plan_landed"), ("kw", "keywords_found"),
              ("ident", "identical"), ("shared", "shared_lines"), ("dist-2", "distinct_2"),
              ("scheme", "scheme_full"), ("valid", "valid"), ("s/poem", "s_per_poem")]


def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key in ("bu", "wu") and isinstance(value, float):
        return "-" if value != value else f"{100 * value:.1f}%"
    if key == "s_per_poem":
        return fmt(value, 2)
    return fmt(value)


def pad(text: str, width: int) -> str:
    """Left-aligned in ``width`` terminal columns (a Han character takes two)."""
    return text + " " * max(0, width - sum(2 if is_han(ch) else 1 for ch in text))


def print_tables(rows: list[dict], out=sys.stdout) -> None:
    for language, columns, title in (("zh", ZH_COLUMNS, "Chinese"), ("en", EN_COLUMNS, "English")):
        chosen = [r for r in rows if r["language"] == language]
        if not chosen:
            continue
        width = max(24, *(len(r["source"]) for r in chosen))
        header = f"{'form':<8} {'row':<{width}} {'n':>4} " + " ".join(f"{name:>6}" for name, _ in columns)
        print(f"\n{title}", file=out)
        print(header, file=out)
        print("-" * len(header), file=out)
        previous = None
        for r in chosen:
            if previous is not None and r["form"] != previous:
                print(file=out)
            previous = r["form"]
            print(f"{pad(r['form'], 8)} {r['source']:<{width}} {r['n']:>4} "
                  + " ".join(f"{cell(r, key):>6}" for _, key in columns), file=out)


def compare(paths: list[str]) -> int:
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    rows = []
    order: list[tuple] = []
    by_key: dict[tuple, list[dict]] = {}
    for result in results:
        for r in result["rows"]:
            generated = r.get("generated", False)
            key = (r["language"], r["form"], r["source"] if not generated else "")
            source = f"{result.get('label', '?')}" if generated else r["source"]
            if key not in by_key:
                order.append(key)
                by_key[key] = []
            if not generated and by_key[key]:
                continue  # a human baseline is printed once (from the first file that has it)
            by_key[key].append({**r, "source": source})
    forms = list(dict.fromkeys(k[1] for k in order))
    for form in forms:
        for key in [k for k in order if k[1] == form and k[2] == ""] + [k for k in order if k[1] == form and k[2]]:
            rows += by_key[key]
    for result in results:
        code = result.get("code", {})
        print(f"{result.get('label')}: code {code.get('commit')} ({code.get('root')}), {result.get('cpu')}, "
              f"wall {result.get('wall_s', 0):.0f} s, themes {result['args'].get('themes')}, "
              f"seeds {result['args'].get('seeds')}")
    print_tables(rows)
    return 0


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--themes", type=int, default=30, help="first N themes of each theme file (default 30)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--forms", default=DEFAULT_FORMS, help=f"comma-separated forms (default {DEFAULT_FORMS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['themes']} themes, seed {QUICK['seeds']}, forms {QUICK['forms']}")
    parser.add_argument("--label", default=None, help="name of this run in tables and --compare (default: commit)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures and every poem here")
    parser.add_argument("--compare", nargs="+", metavar="JSON", help="print saved runs side by side, run nothing")
    parser.add_argument("--rescore", type=Path, metavar="JSON",
                        help="recompute a saved run's rows from its poems (after a metric changed), rewrite it")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="npm chinese-poetry package folder")
    parser.add_argument("--shakespeare-text", type=Path, default=DEFAULT_SHAKESPEARE)
    parser.add_argument("--real-n", type=int, default=50, help="human poems drawn per theme (default 50)")
    parser.add_argument("--zh-themes", type=Path, default=THEMES_DIR / "zh.txt")
    parser.add_argument("--en-themes", type=Path, default=THEMES_DIR / "en.txt")
    parser.add_argument("--override", action="append", default=[],
                        help="extra config override for every run, e.g. generation.candidates=4 (repeatable)")
    parser.add_argument("--examples", type=int, default=2, help="example poems printed per form")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes, each on one thread (default 2: both cores of the 2-core machines; "
                             "1 runs everything in this process)")
    parser.add_argument("--worker-tasks", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.compare)
    if args.rescore:
        return rescore(args.rescore, args)
    if args.quick:
        args.themes, args.seeds, args.forms = QUICK["themes"], QUICK["seeds"], QUICK["forms"]
    if args.worker_tasks:
        return worker(args)

    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    unknown = [f for f in forms if f not in ZH_FORMS and f not in EN_FORMS]
    if unknown:
        parser.error(f"unknown form(s) {', '.join(unknown)}; choose from {', '.join([*ZH_FORMS, *EN_FORMS])}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    themes = {"zh": load_themes(args.zh_themes)[: args.themes], "en": load_themes(args.en_themes)[: args.themes]}
    code = code_under_test()
    label = args.label or code["commit"]
    config = base_config(args.override)
    print(f"bench_theme: code {code['commit']} at {code['root']} (synesthesia {code['version']}), label {label}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores visible); {args.jobs} process(es), one torch thread each")
    gen = config.get("generation", {})
    print(f"{len(themes['zh'])} zh / {len(themes['en'])} en themes, seeds {seeds}, forms {','.join(forms)}; "
          f"candidates {gen.get('candidates')}, max_attempts {gen.get('max_attempts')}, "
          f"T {gen.get('temperature')}, top-k {gen.get('top_k')}, top-p {gen.get('top_p')}, "
          f"repetition penalty {gen.get('repetition_penalty')}")
    sys.stdout.flush()

    tasks = [(form, seed) for form in forms for seed in seeds]
    log = lambda m: (print(m), sys.stdout.flush())  # noqa: E731
    generated = generate_in_processes(tasks, args, log) if args.jobs > 1 else None
    poems, load_seconds = generated or generate_poems(tasks, themes, config, log=log)
    rows, notes = build_rows(poems, forms, themes, label, args)
    wall = time.perf_counter() - started

    print_tables(rows)
    print()
    for n in notes:
        print("note:", n)
    print("goal: 不 ≤ 3% (real Tang ≈ 2%). Human rows: coverage is a base rate, not a target; dist-2 on as many "
          "poems as the generated row.")
    print(f"models loaded once per process ({load_seconds:.1f} s); wall time {wall:.0f} s ({wall / 60:.1f} min) "
          f"on {cpu_model()}")
    if args.examples:
        print("\nexamples (first themes, first seed):")
        for form in forms:
            for p in [p for p in poems if p["form"] == form and p["seed"] == seeds[0]][: args.examples]:
                print(f"  {form} [{p['theme']}] " + p["text"].replace("\n", " / "))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"label": label, "code": code, "cpu": cpu_model(), "wall_s": round(wall, 1),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "args": {"themes": args.themes, "seeds": seeds, "forms": forms, "real_n": args.real_n,
                           "override": args.override, "jobs": args.jobs},
                  "generation": config.get("generation"), "rows": rows, "notes": notes, "poems": poems}
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


def build_rows(poems: list[dict], forms: list[str], themes, label: str, args) -> tuple[list[dict], list[str]]:
    """Per form: the generated row, then the human baselines; and notes on skipped baselines."""
    rows: list[dict] = []
    notes: list[str] = []
    real = sh_lines = None
    for form in forms:
        language = "zh" if form in ZH_FORMS else "en"
        mine = [p for p in poems if p["form"] == form]
        row = summarise(mine, language, form)
        row.update(source=f"{label} (generated)", generated=True)
        rows.append(row)
        if language == "zh":
            if real is None and args.corpus and Path(args.corpus).is_dir():
                real = real_tang(args.corpus)
            if real and real.get(form):
                rows += real_tang_rows(form, real[form], themes["zh"], args.real_n, len(mine))
            elif not any("chinese-poetry" in n for n in notes):
                notes.append(f"no real Tang rows: {args.corpus} not found (scripts/prepare_corpora.sh tang "
                             "fetches the npm chinese-poetry package)")
        else:
            if sh_lines is None and args.shakespeare_text.is_file():
                sh_lines = shakespeare_lines(args.shakespeare_text)
            if sh_lines:
                rows.append(shakespeare_row(form, sh_lines, themes["en"], args.real_n, len(mine)))
            elif not any("tinyshakespeare" in n for n in notes):
                notes.append(f"no human English rows: {args.shakespeare_text} not found")
    return rows, notes


def rescore(path: Path, args) -> int:
    """Recompute every row of a saved run from its poems (metrics changed, nothing regenerated)."""
    result = json.loads(Path(path).read_text(encoding="utf-8"))
    saved = result["args"]
    args.real_n = saved.get("real_n", args.real_n)
    n = saved["themes"]
    themes = {"zh": load_themes(args.zh_themes)[:n], "en": load_themes(args.en_themes)[:n]}
    result["rows"], result["notes"] = build_rows(result["poems"], saved["forms"], themes, result["label"], args)
    result["rescored"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    Path(path).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"rescored {path}")
    return compare([str(path)])


def worker(args) -> int:
    """One worker process of ``--jobs``: its (form, seed) tasks, written as JSON."""
    import torch

    torch.set_num_threads(1)
    tasks = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in args.worker_tasks.split(",") if t]
    themes = {"zh": load_themes(args.zh_themes)[: args.themes], "en": load_themes(args.en_themes)[: args.themes]}
    poems, load_seconds = generate_poems(tasks, themes, base_config(args.override),
                                         log=lambda m: (print(m), sys.stdout.flush()))
    args.worker_out.write_text(json.dumps({"poems": poems, "load_seconds": load_seconds}, ensure_ascii=False),
                               encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
