# `make run` and `make test` work on a fresh clone: both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test venv layers bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m featviz $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

layers: $(STAMP)
	$(PY) -m featviz layers $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
