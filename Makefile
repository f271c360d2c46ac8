# Two commands do all the set-up: `make demo` and `make test`. Both bootstrap their own environment.
VENV ?= .venv
PY := $(VENV)/bin/python
SYN := $(VENV)/bin/synesthesia

.PHONY: bootstrap demo test test-fast lint bench bench-all corpora train-tang train-shakespeare bench-models clean

bootstrap:
	@VENV=$(VENV) bash scripts/bootstrap.sh

demo: bootstrap
	$(SYN) run hydra.run.dir=outputs/demo-zh form=七绝 theme=秋月
	$(SYN) run hydra.run.dir=outputs/demo-en form=haiku 'theme=winter sea'
	@echo "Artworks: outputs/demo-zh/artwork and outputs/demo-en/artwork (edit text.txt, then: $(SYN) render outputs/demo-zh)"

test: bootstrap
	$(PY) -m pytest -q

# The suite without the tests marked slow (real training runs, browsers, the shipped models end to end).
test-fast: bootstrap
	$(PY) -m pytest -q -m "not slow"

# ruff (rules in pyproject.toml) over everything, mypy (lenient, pyproject.toml) over the core.
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Decoding speed against HF and the memory roofline (eager and compiled), then warm pipeline latency.
bench: bootstrap
	$(PY) benchmarks/bench_generate.py --compile
	$(PY) benchmarks/bench_warm.py

# Every table in the README, one script each.
bench-all: bootstrap corpora
	$(PY) benchmarks/bench_generate.py --compile
	$(PY) benchmarks/bench_warm.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_poetry.py
	$(PY) benchmarks/bench_midi.py
	$(PY) benchmarks/bench_imageprompt.py

# Reproduce the shipped models (corpora from npm chinese-poetry and tinyshakespeare; see scripts/).
corpora: bootstrap
	PY=$(PY) bash scripts/prepare_corpora.sh all

train-tang: bootstrap
	PY=$(PY) bash scripts/train_tang.sh $(TRAIN_ARGS)

train-shakespeare: bootstrap
	PY=$(PY) bash scripts/train_shakespeare.sh $(TRAIN_ARGS)

.PHONY: train-verse
train-verse: bootstrap
	PY=$(PY) bash scripts/train_verse.sh $(TRAIN_ARGS)

bench-models: corpora
	$(PY) benchmarks/bench_models.py

clean:
	rm -rf build dist *.egg-info outputs multirun
