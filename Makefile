# Two entry points (see README "Quick start"): `make run` and `make test`.
# Both create .venv if missing, install xnorlab (with its native engine) into it, and are quick
# the second time: the install is redone only when pyproject.toml or native/ changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xnorlab-installed
NATIVE_SOURCES := $(shell find native -type f 2>/dev/null)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test lint clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(NATIVE_SOURCES)
	$(BIN)/python -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" ninja
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/xnorlab $(ARGS)

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check xnorlab tests
	$(BIN)/ruff format --check xnorlab tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf build $(STAMP)
