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
## make bench: quotes, the subscription jobs at 10k/100k against one set-based SQL, the outbox
##   relay to RabbitMQ and HTTP, then HTTP load vs pgbench → bench/results.md (≈ 15 min)
## make bench-quick: the HTTP scenarios in short runs, a smoke check for CI (≈ 3 min)
## make bench-scale: the subscription jobs at 1M against the set-based SQL (≈ 15 min)
.PHONY: bench bench-quick bench-scale
bench: $(INSTALLED)
	$(BIN)/python bench/quote_latency.py --json bench/results/quote_latency.json
	$(BIN)/python bench/jobs_at_scale.py --sizes 10000,100000 --repeats 1 \
		--jobs expire-subscriptions,remind-expiring --json bench/results/jobs_at_scale.json
	$(BIN)/python bench/outbox_throughput.py --relays 1,2 --json bench/results/outbox_throughput.json
	$(BIN)/python bench/http_load.py --markdown bench/results.md --json bench/results/http_load.json

bench-quick: $(INSTALLED)
	$(BIN)/python bench/http_load.py --quick --markdown bench/results/http_quick.md --json bench/results/http_quick.json

bench-scale: $(INSTALLED)
	$(BIN)/python bench/jobs_at_scale.py --sizes 1000000 --repeats 1 \
		--jobs expire-subscriptions,remind-expiring --json bench/results/jobs_set_based_1m.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
