"""Screenplay scenes and story fragments from the shipped ``shakespeare`` model: form validity and theme.

    .venv/bin/python benchmarks/bench_prose.py [--seeds 2] [--n 4] [--forms screenplay,story]

Ten fresh themes (none used while the prose forms were written) × ``--seeds`` seeds, ``--n`` candidates
each, sampled as the pipeline samples (``conf/generation/default.yaml``: temperature 0.8, top-k 40,
top-p 0.95, repetition penalty 1.1), for three recipes:

- ``before``: the recipe before the prose forms (theme words as keywords, no heading, no constraints,
  its token budget: 600 for a scene, 500 for a story);
- ``heading only``: today's conditioning (the scene heading built from the theme is prompted) without the
  decoding constraints (``generation.constrained=false``);
- ``constrained``: today's form (``synesthesia_poetry.prose``: the parts placed by a logits processor).

Columns: ``valid`` (the form's validator: for a screenplay a heading first, action, a cue followed by
dialogue; for a story at least 40 words ending on a full sentence), ``on-theme`` (a word of the theme
itself, in any plural/possessive form, in the body: action and dialogue for a screenplay, the heading and
cues not counted), ``both``, ``dict`` (share of the body's words in the decoder's lexicon), ``cues`` (texts
holding a drama speaker cue ``NAME:``), ``words`` (mean words in the body) and ``s/text`` (seconds per
candidate, one thread). ``best of n`` is what the pipeline keeps: the best candidate of each (theme, seed)
by the validator (valid first, then score, which an off-theme text loses 40% of).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
THEMES = ["night train", "abandoned orchard", "old soldier", "first snow", "flooded village", "stolen violin",
          "desert well", "last letter", "harbour at dawn", "clockmaker's daughter"]
BEFORE_BUDGET = {"screenplay": 600, "story": 500}  # the forms' max_new_tokens before the prose forms
CUE = re.compile(r"(?m)^[ \t]*[A-Z][A-Za-z .'-]*:[ \t]*$|^[A-Z][A-Za-z .'-]*:\s")


def request_for(theme: str):
    from synesthesia.components import FormRequest

    request = FormRequest(theme=theme)
    try:  # the pipeline's theme understanding, where this checkout has it
        from synesthesia.theme import understand_theme

        request.keywords = list(understand_theme(theme, "en").keywords)
    except ImportError:
        pass
    return request


def before_conditioning(form: str, request):
    """The recipe before the prose forms: the theme's words as keywords, no heading, no prefix."""
    from synesthesia.components import Conditioning

    keywords = [w for w in re.split(r"[\s,;]+", request.theme.strip()) if w]
    return Conditioning(form=form, keywords=keywords, language="en")


def body_of(form: str, text: str) -> str:
    from synesthesia_poetry.forms import fountain_elements

    if form == "screenplay":
        return "\n".join(t for k, t in fountain_elements(text) if k in ("action", "dialogue"))
    return text


def measure(form, recipe: str, loaded, seeds: int, n: int) -> dict:
    import torch

    from synesthesia.components import GenerationRequest, SamplingSettings
    from synesthesia_poetry.constraints import english_lexicon
    from synesthesia_poetry.prose import theme_mentions, theme_words

    lexicon = english_lexicon()
    rows = []  # per candidate: (theme, seed, valid, on_theme, dict_share, cue, words, score)
    seconds = 0.0
    for theme in THEMES:
        request = request_for(theme)
        own = theme_words(request)
        for seed in range(seeds):
            conditioning = (before_conditioning(form.name, request) if recipe == "before"
                            else form.conditioning(request))
            make = (lambda tok, r=request: form.logits_processors(tok, r)) if recipe == "constrained" else None
            budget = BEFORE_BUDGET[form.name] if recipe == "before" else form.max_new_tokens
            sampling = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1,
                                        max_new_tokens=budget, seed=seed)
            torch.manual_seed(seed)
            started = time.perf_counter()
            raw = loaded.generate(GenerationRequest(conditioning=conditioning, sampling=sampling, n=n,
                                                    make_logits_processors=make))
            seconds += time.perf_counter() - started
            for text in raw:
                if recipe == "before" and form.name == "screenplay":
                    text = text.strip()  # the old finalize
                else:
                    text = form.finalize(text)
                verdict = form.validate(text, request)
                body = body_of(form.name, text)
                words = re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", body)
                known = sum(lexicon.word_syllables(w) is not None for w in words)
                rows.append(dict(key=(theme, seed), valid=verdict.ok, on_theme=bool(theme_mentions(body, own)),
                                 dict=known / max(1, len(words)), cue=bool(CUE.search(text)), words=len(words),
                                 score=verdict.score))
    best = {}
    for row in rows:
        current = best.get(row["key"])
        if current is None or (row["valid"], row["score"]) > (current["valid"], current["score"]):
            best[row["key"]] = row
    return {"all": rows, "best": list(best.values()), "s_per_text": seconds / max(1, len(rows))}


def line(form: str, recipe: str, which: str, rows: list[dict], s_per_text: float) -> str:
    k = max(1, len(rows))
    valid = sum(r["valid"] for r in rows) / k
    theme = sum(r["on_theme"] for r in rows) / k
    both = sum(r["valid"] and r["on_theme"] for r in rows) / k
    dict_share = sum(r["dict"] for r in rows) / k
    cues = sum(r["cue"] for r in rows) / k
    words = sum(r["words"] for r in rows) / k
    return (f"{form:<11}{recipe:<13}{which:<11}{len(rows):>4}{valid:>8.0%}{theme:>10.0%}{both:>7.0%}"
            f"{dict_share:>7.0%}{cues:>7.0%}{words:>7.0f}{s_per_text:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n", type=int, default=4, help="candidates per (theme, seed)")
    parser.add_argument("--forms", default="screenplay,story")
    parser.add_argument("--recipes", default="before,heading only,constrained")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from synesthesia_poetry.forms import all_forms
    from synesthesia_transformer import TransformerGenerator

    forms = {f.name: f for f in all_forms()}
    loaded = TransformerGenerator().load("shakespeare")
    print(f"CPU: {cpu_model()} ({torch.get_num_threads()} thread(s)), torch {torch.__version__}; "
          f"model shakespeare; {len(THEMES)} themes x {args.seeds} seeds x {args.n} candidates")
    print(f"{'form':<11}{'recipe':<13}{'texts':<11}{'n':>4}{'valid':>8}{'on-theme':>10}{'both':>7}"
          f"{'dict':>7}{'cues':>7}{'words':>7}{'s/text':>8}")
    for name in args.forms.split(","):
        for recipe in args.recipes.split(","):
            if recipe == "heading only" and name != "screenplay":
                continue  # a story has no heading: its conditioning is the old one
            result = measure(forms[name], recipe, loaded, args.seeds, args.n)
            print(line(name, recipe, "candidate", result["all"], result["s_per_text"]))
            print(line(name, recipe, f"best of {args.n}", result["best"], result["s_per_text"]))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
