# The two commands of the README: `make demo` and `make test`. Both do all
# setup on a fresh machine (venv, install, services) and are safe to repeat.

# The first interpreter that actually runs and is 3.11 or 3.12 (pyenv shims may
# exist for versions that are not selected).
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null \
	&& command -v $$p && break; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit services install bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python 3.11 or 3.12 (python3.11, python3.12 or python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

services:
	bash deploy/ensure-services.sh

demo: install
	$(BIN)/folio demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

unit: install services
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install services
	$(BIN)/folio bench

clean:
	rm -rf $(VENV) .folio .pytest_cache .mypy_cache .ruff_cache
