# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint format bench gpu-bundles gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[compiler]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

# Build the example package into one bundle, then run its kernels on the CPU against numpy.
demo: $(VENV)/.installed
	$(BIN)/gpuaot build fixtures/example
	$(BIN)/python fixtures/demo.py

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check gpuaot tests bench cli

format: $(VENV)/.installed-dev
	$(BIN)/ruff format gpuaot tests bench cli

# numba and numba-cuda, the peers the benches compare against, in their own environment: numba
# pins llvmlite. Where it cannot be installed (offline), the benches print "-" for the peers.
.venv-bench/.installed: pyproject.toml | $(VENV)/.installed-dev
	-$(PYTHON) -m venv .venv-bench && .venv-bench/bin/python -m pip install --quiet $$($(BIN)/python \
	  -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))") \
	  && touch $@

bench: $(VENV)/.installed-dev .venv-bench/.installed
	$(BIN)/python bench/cpu_kernels.py
	$(BIN)/python bench/check_leaks.py
	$(BIN)/python bench/build_times.py --vs-numba 20
	$(BIN)/python bench/gpu_sass.py

# Phase 1 of the GPU check, on any machine: bundles, inputs and expected results in gpu-check/.
gpu-bundles: $(VENV)/.installed-dev
	$(BIN)/python bench/gpu_bundles.py gpu-check

# Phase 2, on a machine with a GPU (numpy and cuda-python suffice there; exit 77 without one).
gpu-check:
	PYTHONPATH=. $(PYTHON) bench/gpu_check.py gpu-check

clean:
	rm -rf fixtures/*/_gpuaot .pytest_cache gpu-check
