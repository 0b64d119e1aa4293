# StreamPulse: the two commands are `make demo` (the whole pipeline) and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PYTHONUNBUFFERED := 1

.PHONY: setup up down clean status logs worker api demo test test-unit lint lock bench bench-quick soak dashboards

setup:
	@scripts/setup.sh

up: setup
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

clean:
	@scripts/stack.sh clean

status:
	@scripts/stack.sh status

logs:
	@scripts/stack.sh logs

worker: up
	$(BIN)/faust -A app worker -l info

api: setup
	$(BIN)/uvicorn api.main:app --host $${STREAMPULSE_API_HOST:-127.0.0.1} --port $${STREAMPULSE_API_PORT:-8000}

demo: up
	@$(BIN)/python scripts/demo.py

test: setup
	@scripts/run_tests.sh

test-unit: setup
	$(BIN)/pytest tests/unit -q

# Regenerates grafana/dashboards/*.json and the panel reference in docs/monitoring.md.
dashboards: setup
	$(BIN)/python -m grafana.dashboards_src

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app agents tables api producers tests scripts bench support
	$(BIN)/lint-imports
	$(BIN)/python scripts/audit_deps.py requirements.lock requirements-test.lock

# Re-resolves requirements.lock (the image) and requirements-test.lock (setup, CI) from setup.cfg.
lock: setup
	$(BIN)/python scripts/lock.py

bench:
	@STREAMPULSE_EXTRAS=test,bench scripts/setup.sh && scripts/stack.sh up && $(BIN)/python -m bench

bench-quick:
	@STREAMPULSE_EXTRAS=test,bench scripts/setup.sh && scripts/stack.sh up && $(BIN)/python -m bench --quick

# 10 minutes at half the measured live rate, a worker SIGKILL + restart every 2 minutes; report in bench/results/.
soak:
	@STREAMPULSE_EXTRAS=test,bench scripts/setup.sh && scripts/stack.sh up && $(BIN)/python -m bench.soak
