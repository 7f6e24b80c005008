# Klantbeeld — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME ?= demo-workspace
DEMO_DATA ?= demo-data
CUSTOMERS ?= 2000
SEED ?= 42
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_WORKERS ?= 2

.PHONY: install demo demo-load test bench clean help

help:
	@echo "make demo   install, generate demo data, load it, serve the API on http://$(HOST):$(PORT)"
	@echo "make test   install test dependencies and run the whole suite (PostgreSQL included)"
	@echo "make bench  run the benchmarks and print their tables"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

# Generates demo data, loads it into a fresh DuckDB workspace, then serves the API.
demo: demo-load
	$(BIN)/klantbeeld serve --data-dir $(DEMO_HOME) --host $(HOST) --port $(PORT)

demo-load: $(VENV)/.installed
	$(BIN)/klantbeeld demo --customers $(CUSTOMERS) --seed $(SEED) --out $(DEMO_DATA) \
		--data-dir $(DEMO_HOME) --fresh --url http://$(HOST):$(PORT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -p no:cacheprovider

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(DEMO_HOME) $(DEMO_DATA) bench-results .pytest_cache
