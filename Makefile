# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if missing, install, run the main job on the bundled organism
#   make test   - create .venv if missing, install, run the test suite
#
# torch is installed first and on its own (TORCH, default torch==2.13.0, the CPU build on
# this kind of machine), so that nothing else pulls a multi-GB CUDA build; a venv that
# already has torch keeps it.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.interp-installed

.PHONY: demo test lint bench notebooks clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/interp demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check interp tests benchmarks experiments
	$(VENV)/bin/ruff format --check interp tests benchmarks experiments
	$(VENV)/bin/mypy

bench: $(STAMP)
	cd benchmarks && ../$(PY) bench_capture.py

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/[0-9]*.py

clean:
	rm -rf $(VENV) .pytest_cache
