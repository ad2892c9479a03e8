# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE := copy
# Bytecode as Python writes it, on first import: with PYTHONDONTWRITEBYTECODE set (as in our images, where it is
# compiled at build time, and in some dev shells) every process (service, CLI, test worker) would compile each module
# it imports at every start. Compiling all of site-packages at install instead (UV_COMPILE_BYTECODE) cost ~40 s of
# CPU in a fresh clone for ~19,000 files, most of which no process here imports.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: run test test-fast install lock lint system-tools bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

## install: create .venv with every workspace package, exactly as uv.lock pins them
install: $(UV)
	$(UV) sync --frozen --all-packages --python $(PYTHON)

lock: $(UV)
	$(UV) lock --python $(PYTHON)

## system-tools: Debian packages some tests need (nginx, rclone, debootstrap, systemd-nspawn, docker-registry);
## installs only what is missing
system-tools:
	@bash scripts/ensure-system-tools.sh

## run: embedded Postgres 16 + NATS JetStream (unless DATABASE_URL / NATS_URL are set), migrations, every service
run: install
	$(BIN)/letsbe-run

## TEST_WORKERS: pytest-xdist processes for `make test`, sharing the run's Postgres and NATS (every test has its own
## database and bus namespace, every worker its own template). A module's tests stay on one worker; the test VPS
## ones form one group that starts first (conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

## test: the whole suite against real Postgres and NATS started for this run and stopped afterwards (it lists its
## 30 slowest tests: where the time goes)
test: install system-tools
	$(BIN)/letsbe-devstack run -- $(BIN)/pytest -n $(TEST_WORKERS) --durations=30 $(ARGS)

## test-fast: a subset while developing, e.g. make test-fast ARGS="services/dns -x"; leaves out the tests that
## boot the Debian 12 test VPS (marker vps) unless ARGS says otherwise (ARGS="-m vps" runs only them); one
## process unless ARGS has e.g. "-n 2"
test-fast: install
	$(BIN)/letsbe-devstack run -- $(BIN)/pytest -m "not vps" $(ARGS)

lint: install
	$(BIN)/ruff check conftest.py libs services tests bench deploy

clean:
	rm -rf $(VENV) $(TOOLS) .data .pytest_cache
