#!/usr/bin/env bash
# Reproduce the shipped `shakespeare` model (make train-shakespeare): prepare tinyshakespeare.txt
# (scripts/prepare_corpora.sh shakespeare; SHAKESPEARE=path/to/tinyshakespeare.txt), train with
# conf/train/shakespeare.yaml, install the float16 export into the transformer plugin.
# Extra arguments are Hydra overrides. About 27 minutes with OMP_NUM_THREADS=2 on a 2-core CPU, 47 on one
# core (dtype auto: bfloat16 autocast on this Xeon with AMX, where it is faster; float32 elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
PY="$PY" DATA="$DATA" bash scripts/prepare_corpora.sh shakespeare
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m synesthesia train train=shakespeare \
  "data.paths=[$DATA/shakespeare/train.jsonl]" out_dir=runs/shakespeare overwrite=true "$@"
# The model learned drama: prompted with a speaker's cue (Romeo, who speaks in verse), it writes his lines
# for the verse forms instead of opening with a cue of its own (the transformer plugin reads meta.primer).
"$PY" scripts/install_checkpoint.py runs/shakespeare shakespeare --keywords "$DATA/shakespeare/keywords.json" \
  --meta '{"primer": {"text": "ROMEO:\n", "forms": ["haiku", "sonnet", "limerick", "acrostic", "free"]}}'
