#!/usr/bin/env bash
# Sets up everything `make demo` and `make test` need, from scratch, and is quick when all is there:
# Debian packages (fonts, a synthesizer, a soundfont, JACK), then a virtual environment with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# One Debian package per line; plugins add what they need here.
DEBIAN_PACKAGES=(
  fonts-wqy-zenhei
  fonts-dejavu-core
  fluidsynth
  timgm6mb-soundfont
  jackd2
  libjack-jackd2-dev
  libasound2-dev
  wordnet-base  # WordNet 3.0 data files: English words related to a theme (synesthesia.wordnet)
  chromium  # the browser tests (Playwright drives it): poem_html and the gallery page
)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks whether to enable realtime priority; answer no without a prompt.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install these Debian packages (as root): apt-get install ${missing[*]}" >&2
    echo "bootstrap: continuing; features that need them will say so." >&2
  fi
fi

stamp="$VENV/.synesthesia-installed"
if [[ ! -f $stamp || pyproject.toml -nt $stamp || scripts/bootstrap.sh -nt $stamp ]]; then
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  # The CPU build of torch is enough everywhere (and lies on disk on our machines); a CUDA build works too.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0" \
    || "$VENV/bin/python" -m pip install -q torch
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  touch "$stamp"
fi
