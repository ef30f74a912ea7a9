# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint format bench clean

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
	$(BIN)/ruff format --check gpuaot tests bench

format: $(VENV)/.installed-dev
	$(BIN)/ruff format gpuaot tests bench

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/cpu_kernels.py
	$(BIN)/python bench/check_leaks.py

clean:
	rm -rf fixtures/*/_gpuaot .pytest_cache
