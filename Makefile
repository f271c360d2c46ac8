# Two commands do all the set-up: `make demo` and `make test`. Both bootstrap their own environment.
VENV ?= .venv
PY := $(VENV)/bin/python
SYN := $(VENV)/bin/synesthesia

.PHONY: bootstrap demo test bench clean

bootstrap:
	@VENV=$(VENV) bash scripts/bootstrap.sh

demo: bootstrap
	$(SYN) run hydra.run.dir=outputs/demo-zh 'form=jueju7' 'theme=autumn moon'
	@echo "Artwork written under outputs/demo-zh/artwork"

test: bootstrap
	$(PY) -m pytest -q

bench: bootstrap
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf build dist *.egg-info outputs multirun
