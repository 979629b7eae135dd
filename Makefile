# Two commands for a newcomer: `make demo` (the comparison on the default problem) and `make test`.
# `make docs` builds the Sphinx documentation (warnings are errors) into docs/_build/html.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench bench-peer docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pyro_node_uq compare --problem chemical --methods demo --quick --out results

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# ruff's default rules, at the version the code is kept clean with
lint: $(STAMP)
	$(PY) -m pip install -q ruff==0.17.6
	$(PY) -m ruff check .

$(VENV)/.docs-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e ".[docs]"
	touch $(VENV)/.docs-installed

docs: $(VENV)/.docs-installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/ensemble_throughput.py

bench-peer: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	taskset -c 1 $(PY) benchmarks/peer_numpyro.py

clean:
	rm -rf $(VENV) results build dist *.egg-info
