# churnwatch developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Dependencies first (pure Python), then the domain core compiled with mypyc against them (ADR 0018). The compile
# runs again when a source it compiles or imports changes: a compiled module older than its source would run the
# old code (tests refuse to start then, see streams/compiled.py).
NATIVE_SRC := setup.py $(wildcard streams/domain/*.py streams/ingest/*.py streams/processing.py streams/alignment.py streams/health_schedule.py streams/offset_order.py streams/state_cache.py schemas/*.py)

# The compiled modules beside their sources, and mypyc's shared library at the top (what `pure` and `clean` drop).
DROP_COMPILED := find streams -name '*.so' -delete; rm -f churnwatch_native__mypyc*.so

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel 'setuptools>=77'
	CHURNWATCH_COMPILE=0 $(BIN)/pip install -q -e '.[dev,rocksdb]'
	touch $@

$(BIN)/.compiled: $(BIN)/.installed $(NATIVE_SRC)
	@echo "compiling the domain core with mypyc (about a minute)"
	CHURNWATCH_COMPILE=1 $(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(BIN)/.compiled ## create .venv, install churnwatch with dev tools, compile the domain core (mypyc)

pure: $(BIN)/.installed ## drop the compiled modules and run pure Python (py-spy sees inside it); `make install` compiles again
	$(DROP_COMPILED); rm -f $(BIN)/.compiled

demo: install ## THE RUN COMMAND: local stack, topics, worker, a generated stream, a report
	$(BIN)/churnwatch demo

sysdeps: ## install the Debian packages tests use (redis-server, prometheus/promtool) when missing
	@if command -v redis-server >/dev/null && command -v promtool >/dev/null && command -v openssl >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages redis-server and prometheus (once)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server prometheus openssl >/dev/null; \
	else echo "please install the Debian packages redis-server and prometheus"; exit 1; fi

test: install sysdeps ## THE TEST COMMAND: lint, types, schema drift, unit + integration + reliability tests
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m schemas.generate --check
	$(BIN)/pytest

reliability: install sysdeps ## SIGKILL / failover / broker-restart / Redis-outage / hostile-input / security tests; SOAK=1 for the long form; writes docs/reliability/latest.json
	CHURNWATCH_RELIABILITY_OUT=$(CURDIR)/docs/reliability/latest.json \
	  $(BIN)/pytest tests/reliability -m reliability -s $(if $(SOAK),--soak,)

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

bench: install ## benchmark on the local stack (ports 27092/27379, below the ephemeral range): writes docs/benchmarks/latest.{json,md}
	$(BIN)/churnwatch bench $(BENCH_ARGS)

clean: ## remove the virtualenv, compiled modules and local worker data (not the Kafka jar cache)
	rm -rf $(VENV) .churnwatch-data build
	$(DROP_COMPILED)


.PHONY: help install pure sysdeps demo test reliability unit lint schemas up down status topics worker bench clean
