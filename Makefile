# Two commands on a fresh machine with Python 3.11+:  make run  /  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

## Start the service at http://127.0.0.1:8000 (embedded PostgreSQL in ./.billing, sandbox provider)
run: $(INSTALLED)
	$(BIN)/billing serve

## The whole test suite (embedded PostgreSQL, or BILLING_TEST_DATABASE_URL when set)
test: $(INSTALLED)
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

## Speed and memory benchmarks on the machine's PostgreSQL (method and last results: bench/README.md)
BENCH_SIZES ?= 10000,100000,1000000
BENCH_REPEATS ?= 3
.PHONY: bench
bench: $(INSTALLED)
	$(BIN)/python bench/jobs_at_scale.py --sizes $(BENCH_SIZES) --repeats $(BENCH_REPEATS) --json bench/results/jobs_at_scale.json
	$(BIN)/python bench/quote_latency.py --json bench/results/quote_latency.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
