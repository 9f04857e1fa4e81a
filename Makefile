# The two commands of the README: `make run` and `make test`. Both set up first.
PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
PORT     ?= 8000
INSTANCE ?= a
WORKERS  ?= 3

.PHONY: run run-production test test-fast setup chromium install uninstall sync bench bench-eden bench-hub clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

## serve real Sahana Eden (instance $(INSTANCE)) with the plugin on 127.0.0.1:$(PORT), demo data, Eden's scheduler
run: setup
	$(PY) scripts/eden.py run --instance $(INSTANCE) --port $(PORT)

## Sahana's production stack on this machine: uWSGI (PROCESSES worker processes) on the instance's own
## PostgreSQL (kept in .runtime/pg-$(INSTANCE)/), Eden's scheduler workers as processes of their own
PROCESSES ?= 4
run-production: setup
	$(PY) scripts/eden.py run --production --instance $(INSTANCE) --port $(PORT) --processes $(PROCESSES)

## the browser tests' headless chromium (Debian's; playwright drives it, never downloads one)
chromium:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

## the whole suite: engine tier (minihost) and Eden tier (real Eden), on SQLite and a private PostgreSQL 15;
## in WORKERS processes (pytest-xdist: most tests wait on servers; an idle worker steals the other's queued tests), the longest first (tests/conftest.py LONGEST), the 30
## slowest listed at the end; the path is absolute because the
## harness changes directory into a web2py runtime folder before the workers collect
test: setup chromium
	$(PY) -m pytest -n $(WORKERS) --dist worksteal --durations=30 $(CURDIR)/tests

## the engine tier only (minihost, no real Eden): a few minutes
test-fast: setup
	$(PY) -m pytest -n $(WORKERS) --dist worksteal $(CURDIR)/tests -m "not eden"

## copy the plugin into an existing Eden application: make install EDEN=/path/to/web2py/applications/eden
install:
	@test -n "$(EDEN)" || { echo "usage: make install EDEN=/path/to/web2py/applications/eden"; exit 2; }
	$(PYTHON) scripts/install.py install "$(EDEN)"

## remove exactly the plugin's files from it again
uninstall:
	@test -n "$(EDEN)" || { echo "usage: make uninstall EDEN=/path/to/web2py/applications/eden"; exit 2; }
	$(PYTHON) scripts/install.py uninstall "$(EDEN)"

## the sync CLI against instance $(INSTANCE): make sync ARGS="export -o file.csv"
sync: setup
	$(PY) scripts/eden.py sync --instance $(INSTANCE) $(ARGS)

bench: setup
	$(PY) tests/bench/bench_sync.py $(ARGS)

## the plugin's merge into real Eden against Eden's own S3XML import (tests/bench/bench_eden.py)
bench-eden: setup
	$(PY) tests/bench/bench_eden.py $(ARGS)

## a hub on Sahana's production stack (PostgreSQL) and 1, 10, 100 simulated peers syncing at once (tests/bench/bench_hub.py)
bench-hub: setup
	$(PY) tests/bench/bench_hub.py $(ARGS)

clean:
	rm -rf .runtime
