# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.base-installed
FULL   := $(VENV)/.full-installed

.PHONY: demo test lint format sinusoid clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Library, the IQA application's dependencies and dev tools (editable, so tests see the working tree).
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,iqa]"
	touch $@

# Everything, including the optional learn2learn extra that the parity tests use.
$(FULL): $(BASE) requirements-l2l.txt
	$(BIN)/pip install -q -r requirements-l2l.txt
	touch $@

demo: $(BASE)
	$(BIN)/metalearn iqa demo --overwrite

lint: $(BASE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(BASE)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(FULL) lint
	$(BIN)/python -m pytest

sinusoid: $(BASE)
	$(BIN)/python benchmarks/sinusoid.py

clean:
	rm -rf $(VENV) build *.egg-info
