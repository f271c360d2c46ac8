# Two commands do all the set-up: `make demo` and `make test`. Both bootstrap their own environment.
VENV ?= .venv
PY := $(VENV)/bin/python
SYN := $(VENV)/bin/synesthesia

.PHONY: bootstrap demo test bench clean

bootstrap:
	@VENV=$(VENV) bash scripts/bootstrap.sh

demo: bootstrap
	$(SYN) run hydra.run.dir=outputs/demo-zh form=七绝 theme=秋月
	$(SYN) run hydra.run.dir=outputs/demo-en form=haiku 'theme=winter sea'
	@echo "Artworks: outputs/demo-zh/artwork and outputs/demo-en/artwork (edit text.txt, then: $(SYN) render outputs/demo-zh)"

test: bootstrap
	$(PY) -m pytest -q

bench: bootstrap
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf build dist *.egg-info outputs multirun
