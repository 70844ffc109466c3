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
	$(BIN)/lint-imports

## Speed and memory benchmarks on the machine's PostgreSQL (method and last results: bench/README.md)
## make bench: HTTP load vs pgbench, claim cost at 10k/100k/1M, quotes → bench/results.md (≈ 15 min)
## make bench-quick: the HTTP scenarios in short runs, a smoke check for CI (≈ 3 min)
## make bench-scale: the scheduler jobs end to end at 10k/100k/1M (hours since the savepoint per row)
BENCH_SIZES ?= 10000,100000,1000000
BENCH_REPEATS ?= 3
.PHONY: bench bench-quick bench-scale
bench: $(INSTALLED)
	$(BIN)/python bench/quote_latency.py --json bench/results/quote_latency.json
	$(BIN)/python bench/claim_cost.py --json bench/results/claim_cost.json
	$(BIN)/python bench/http_load.py --markdown bench/results.md --json bench/results/http_load.json

bench-quick: $(INSTALLED)
	$(BIN)/python bench/http_load.py --quick --markdown bench/results/http_quick.md --json bench/results/http_quick.json

bench-scale: $(INSTALLED)
	$(BIN)/python bench/jobs_at_scale.py --sizes $(BENCH_SIZES) --repeats $(BENCH_REPEATS) --json bench/results/jobs_at_scale.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
