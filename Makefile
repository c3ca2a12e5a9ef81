# Quick start: `make run` (the default experiment) and `make test` (the test suite).
# Both install what is missing first: ngspice with KLU (Debian, needs root or sudo) and a .venv.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.xbarchar-installed
CORES   ?= all

.PHONY: install ngspice run test dryrun bench clean lint gpu-check slurm-start slurm-stop peers mutate docs

install: ngspice $(STAMP)

ngspice:
	bash scripts/install_ngspice.sh

# torch==2.13.0 first: that pin takes the CPU wheel; a looser spec would pull CUDA packages.
# plugins/slurm-bounded is installed as a regular (not editable) package: Snakemake finds executor
# plugins only among the top-level modules on sys.path.
$(STAMP): pyproject.toml plugins/slurm-bounded/pyproject.toml plugins/slurm-bounded/snakemake_executor_plugin_slurm_bounded/__init__.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q ./plugins/slurm-bounded
	touch $(STAMP)

run: install
	$(VENV)/bin/snakemake --cores $(CORES)

dryrun: install
	$(VENV)/bin/snakemake -n

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/bench_spice.py --quick

# On a GPU machine: CUDA-marked tests, bench/bench_dnn.py and a VGG-8 evaluation on CUDA vs CPU -> JSON.
gpu-check: install
	$(PY) scripts/gpu_check.py --json results/gpu_check.json

# A local one-node SLURM cluster with accounting (root; installs the Debian packages): the `slurm` tests.
slurm-start:
	bash scripts/local_slurm.sh start

slurm-stop:
	bash scripts/local_slurm.sh stop

# The peers of bench/peers.py (aihwkit, badcrossbar, CrossSim) in their own environment, .venv-peers;
# CrossSim from a source checkout: make peers CROSSSIM_SRC=/path/to/cross-sim (skipped without it).
peers:
	CROSSSIM_SRC="$(CROSSSIM_SRC)" bash scripts/install_peers.sh

# The docs site: the configuration reference generated from config/schema.yaml, then mkdocs with
# --strict (a broken link or anchor fails). Output in site/.
docs: install
	$(PY) scripts/config_reference.py
	$(VENV)/bin/mkdocs build --strict

lint: install
	$(VENV)/bin/ruff check .

# Mutation testing of the hot paths (mutmut, one module at a time; not part of `make test`: ~30-60 min on
# 2 cores). One module: make mutate MODULES=dnn/mapping.py. Scores: docs/testing.md.
MODULES ?=
mutate: install
	$(PY) tests/mutate.py $(MODULES)

clean:
	rm -rf results .snakemake
