# imagepull-doctor: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint types contracts pytest install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./testkit
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imagepull-doctor demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

check: lint types contracts

test: check pytest

bench: $(STAMP)
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.storm --pods 1000
	$(BIN)/python -m bench.memory --pods 10000
	$(BIN)/python -m bench.scale --pods 20000 --failing 2000 --ramp 10

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
