# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if missing, install, run the main job on the bundled organism
#   make test   - create .venv if missing, install, run the test suite
# and more refresh the README's numbers:
#   make world-card - measure the organism's table (every setting and control, 3 seeds, both worlds)
#   make lora-sweep - standard LoRA (every attention and MLP projection) recipes, each setting
#   make demo-lora  - the demo's analyses on the standard-LoRA finetunes the sweep chose
#   make readme     - put what those commands last wrote into README.md
#
# torch is installed first and on its own (TORCH, default torch==2.13.0, the CPU build on
# this kind of machine), so that nothing else pulls a multi-GB CUDA build; a venv that
# already has torch keeps it.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.interp-installed

.PHONY: demo demo-lora lora-sweep test lint docs check-report bench notebooks readme world-card wheel-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/interp demo

lora-sweep: $(STAMP)
	$(PY) -m interp.experiments.lora_sweep --out runs/lora-sweep

demo-lora: $(STAMP)
	$(VENV)/bin/interp demo --finetune lora --out runs/demo-lora

world-card: $(STAMP)
	$(VENV)/bin/interp world-card --config default --seeds 0 1 2 --sampled 8 --worlds world null

readme: $(STAMP)
	$(PY) -m interp.experiments.readme --readme README.md

# the docs build first (strict: a warning fails it), so pytest's summary is the last line
test: $(STAMP) docs
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check interp tests benchmarks tools
	$(VENV)/bin/ruff format --check interp tests benchmarks tools
	$(VENV)/bin/mypy

# the documentation site, into site/ (mkdocs.yml; --strict: broken links, missing
# references and docstring warnings fail the build)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# report.html of a small-organism run (made first if missing), and a screenshot of it
# with Debian's headless Chromium where it is installed (apt-get install chromium)
REPORT_RUN ?= runs/era_small
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
check-report: $(STAMP)
	test -f $(REPORT_RUN)/results.json || $(VENV)/bin/interp run era_small --out $(REPORT_RUN)
	$(VENV)/bin/interp report $(REPORT_RUN)
	@if [ -z "$(CHROMIUM)" ]; then echo "no chromium: apt-get install chromium, then rerun"; exit 0; fi; \
	profile=$$(mktemp -d); \
	"$(CHROMIUM)" --headless --no-sandbox --disable-gpu --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--hide-scrollbars --user-data-dir=$$profile --window-size=1280,2400 \
		--screenshot=$(abspath $(REPORT_RUN))/report.png \
		file://$(abspath $(REPORT_RUN))/report.html 2>/dev/null; \
	rm -rf $$profile; \
	test -s $(REPORT_RUN)/report.png && echo "screenshot: $(REPORT_RUN)/report.png"

bench: $(STAMP)
	cd benchmarks && ../$(PY) bench_capture.py

# the wheel as a user gets it: built, the bundled specs inside it, installed in a fresh venv
# (torch first, as above) and its command line run from outside the repository
wheel-check: $(STAMP)
	TORCH="$(TORCH)" $(PY) tools/wheel_check.py

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/[0-9]*.py

clean:
	rm -rf $(VENV) .pytest_cache site
