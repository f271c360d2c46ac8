#!/usr/bin/env bash
# Reproduce the shipped `shakespeare` model (make train-shakespeare): prepare tinyshakespeare.txt, train
# with conf/train/shakespeare.yaml, install the float16 export into the transformer plugin.
# SHAKESPEARE=path/to/tinyshakespeare.txt (Karpathy's char-rnn data, public domain:
# https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt).
# Extra arguments are Hydra overrides for the training. About 45–55 minutes on one CPU core.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
SHAKESPEARE=${SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
[[ -f "$SHAKESPEARE" ]] || { echo "train_shakespeare: $SHAKESPEARE not found; download tinyshakespeare.txt and set SHAKESPEARE=PATH"; exit 1; }
"$PY" -m synesthesia.corpus "$SHAKESPEARE" --out "$DATA/shakespeare" --val-fraction 0
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m synesthesia train train=shakespeare \
  "data.paths=[$DATA/shakespeare/train.jsonl]" out_dir=runs/shakespeare overwrite=true "$@"
"$PY" scripts/install_checkpoint.py runs/shakespeare shakespeare --keywords "$DATA/shakespeare/keywords.json"
