# symrnn: two commands on a fresh machine.
#   make demo   create .venv, install, run the main job (symrnn report)
#   make test   same install, then the whole test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REPORT ?= report

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (an open range pulls CUDA)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,numba]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/ensure-latex.sh || echo "LaTeX toolchain unavailable: the report will skip derivation.pdf"
	$(VENV)/bin/symrnn report --output $(REPORT)

test: $(STAMP)
	bash scripts/ensure-latex.sh || echo "LaTeX toolchain unavailable: LaTeX tests will be skipped"
	$(VENV)/bin/ruff check symrnn tests bench
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check symrnn tests bench

bench: $(STAMP)
	$(PY) bench/derive_scaling.py

clean:
	rm -rf $(VENV) $(REPORT) .pytest_cache .hypothesis
