#!/usr/bin/env bash
# Reproduce the shipped `tang` model (make train-tang): fetch the Tang poems from npm, prepare them,
# train with conf/train/tang.yaml, install the float16 export into the transformer plugin.
# Extra arguments are Hydra overrides for the training, e.g. device=cuda optim.max_iters=4000.
# About 35–45 minutes on one CPU core; the prepared data and the run stay in work-data/ and runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
POETRY_VERSION=${POETRY_VERSION:-2.0.1}
if [[ ! -d "$DATA/chinese-poetry/package/dist" ]]; then
  command -v npm >/dev/null || { echo "train_tang: npm is needed to fetch the chinese-poetry package (apt-get install npm)"; exit 1; }
  mkdir -p "$DATA/chinese-poetry"
  (cd "$DATA/chinese-poetry" && npm pack "chinese-poetry@$POETRY_VERSION" >/dev/null && tar xzf "chinese-poetry-$POETRY_VERSION.tgz")
fi
"$PY" -m synesthesia.corpus "$DATA/chinese-poetry/package" --out "$DATA/tang" --val-fraction 0 \
  --forms 五绝,七绝,五律,七律
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m synesthesia train train=tang "data.paths=[$DATA/tang/train.jsonl]" \
  out_dir=runs/tang overwrite=true "$@"
"$PY" scripts/install_checkpoint.py runs/tang tang --keywords "$DATA/tang/keywords.json"
