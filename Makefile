# cityops — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install lint services bench clean

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

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
