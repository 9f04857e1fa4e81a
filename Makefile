# The two commands of the README: `make run` and `make test`. Both set up first.
PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
PORT     ?= 8000
INSTANCE ?= a

.PHONY: run test setup shell bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

## serve instance $(INSTANCE) on 127.0.0.1:$(PORT), with demo data and the scheduler worker
run: setup
	$(PY) scripts/eden.py run --instance $(INSTANCE) --port $(PORT)

## the whole suite: engine tests on SQLite and on a private PostgreSQL 15, HTTP tests
test: setup
	$(PY) -m pytest tests

## the sync CLI against instance $(INSTANCE): make sync ARGS="export -o file.csv"
sync: setup
	$(PY) scripts/eden.py sync --instance $(INSTANCE) $(ARGS)

bench: setup
	$(PY) tests/bench/bench_sync.py $(ARGS)

clean:
	rm -rf .runtime
