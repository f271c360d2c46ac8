#!/usr/bin/env bash
# Prepare the training corpora of the shipped models into work-data/ (make corpora):
#   scripts/prepare_corpora.sh [tang|shakespeare|all]
# tang: fetches the chinese-poetry package with npm (once); shakespeare: needs SHAKESPEARE=path/to/
# tinyshakespeare.txt (https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-work-data}
POETRY_VERSION=${POETRY_VERSION:-2.0.1}
SHAKESPEARE=${SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
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
