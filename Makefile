# cityops — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install lint services bench fuzz soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## make demo: install, then run the whole system on the embedded default with the simulator.
demo: $(STAMP)
	$(PY) app.py

## make test: install what the tests need, make sure the real services are up, run everything.
test: $(STAMP) services
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

services:
	bash .ci/services.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP) services
	$(PY) bench/bench_locate.py

## make fuzz: coverage-guided fuzzing (atheris) of the ingest parsing path and the Open311 POST,
## FUZZ_SECONDS each; finds are kept in var/fuzz/, a crashing input as var/fuzz/crash-*.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e ".[fuzz]"
	$(PY) tools/fuzz_ingest.py ingest -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=var/fuzz/
	$(PY) tools/fuzz_ingest.py open311 -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=var/fuzz/

## make soak: the production layout (private PostgreSQL/PostGIS, Redis, Mosquitto, one ingest
## worker, gunicorn) under the simulator at SOAK_RATE msgs/s with SOAK_VIEWERS headless
## Chromium viewers for SOAK_SECONDS; samples every 30 s into var/soak/, fails when memory grows.
SOAK_SECONDS ?= 3600
SOAK_RATE ?= 2000
SOAK_VIEWERS ?= 10
soak: $(STAMP)
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE) --viewers $(SOAK_VIEWERS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
