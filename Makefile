# churnwatch developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,rocksdb]'
	touch $@

install: $(BIN)/.installed ## create .venv and install churnwatch with dev tools

demo: install ## THE RUN COMMAND: local stack, topics, worker, a generated stream, a report
	$(BIN)/churnwatch demo

test: install ## THE TEST COMMAND: lint, types, schema drift, unit + integration + reliability tests
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m schemas.generate --check
	$(BIN)/pytest

unit: install ## unit tests only (no servers)
	$(BIN)/pytest tests/unit

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy

schemas: install ## regenerate schemas/json from the pydantic models
	$(BIN)/python -m schemas.generate

up: install ## start the local Kafka broker and redis-server (no Docker)
	$(BIN)/churnwatch stack up

down: install ## stop the local stack (only the processes it started)
	$(BIN)/churnwatch stack down

status: install ## show the local stack's processes
	$(BIN)/churnwatch stack status

topics: install ## create the topics on CHURNWATCH_KAFKA_BOOTSTRAP
	$(BIN)/churnwatch topics

worker: install ## run one worker against CHURNWATCH_* settings
	$(BIN)/churnwatch worker

clean: ## remove the virtualenv and local worker data (not the Kafka jar cache)
	rm -rf $(VENV) .churnwatch-data

.PHONY: help install demo test unit lint schemas up down status topics worker clean
