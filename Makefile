# Quick start: `make run` (the default experiment) and `make test` (the test suite).
# Both install what is missing first: ngspice with KLU (Debian, needs root or sudo) and a .venv.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.xbarchar-installed
CORES   ?= all

.PHONY: install ngspice run test dryrun bench clean lint mutate

install: ngspice $(STAMP)

ngspice:
	bash scripts/install_ngspice.sh

# torch==2.13.0 first: that pin takes the CPU wheel; a looser spec would pull CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/snakemake --cores $(CORES)

dryrun: install
	$(VENV)/bin/snakemake -n

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/spice.py --quick

lint: install
	$(VENV)/bin/ruff check .

# Mutation testing of the hot paths (mutmut, one module at a time; not part of `make test`: ~30-60 min on
# 2 cores). One module: make mutate MODULES=dnn/mapping.py. Scores: README "Mutation testing".
MODULES ?=
mutate: install
	$(PY) tests/mutate.py $(MODULES)

clean:
	rm -rf results .snakemake
