# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if missing, install, run the main job on the bundled organism
#   make test   - create .venv if missing, install, run the test suite
# and two more refresh the README's numbers:
#   make world-card - measure the organism's table (every setting and control, 3 seeds, both worlds)
#   make readme     - put what the last `make demo` / `make world-card` wrote into README.md
#
# torch is installed first and on its own (TORCH, default torch==2.13.0, the CPU build on
# this kind of machine), so that nothing else pulls a multi-GB CUDA build; a venv that
# already has torch keeps it.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.interp-installed

.PHONY: demo test lint bench notebooks readme world-card clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/interp demo

world-card: $(STAMP)
	$(VENV)/bin/interp world-card --config default --seeds 0 1 2 --sampled 8 --worlds world null

readme: $(STAMP)
	$(PY) -m interp.experiments.readme --readme README.md --demo runs/demo/summary.md \
		--world-card runs/world-card/world_card.md

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check interp tests benchmarks experiments
	$(VENV)/bin/ruff format --check interp tests benchmarks experiments

bench: $(STAMP)
	cd benchmarks && ../$(PY) bench_capture.py

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/[0-9]*.py

clean:
	rm -rf $(VENV) .pytest_cache
