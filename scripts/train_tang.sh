#!/usr/bin/env bash
# Reproduce the shipped `tang` model (make train-tang): fetch the Tang poems from npm and prepare them
# (scripts/prepare_corpora.sh tang), train with conf/train/tang.yaml, install the float16 export into
# the transformer plugin. Extra arguments are Hydra overrides, e.g. device=cuda optim.max_iters=4000.
# About 40 minutes on one CPU core; the prepared data and the run stay in work-data/ and runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
PY="$PY" DATA="$DATA" bash scripts/prepare_corpora.sh tang
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m synesthesia train train=tang "data.paths=[$DATA/tang/train.jsonl]" \
  out_dir=runs/tang overwrite=true "$@"
"$PY" scripts/install_checkpoint.py runs/tang tang --keywords "$DATA/tang/keywords.json"
