# The course in two commands:
#   make course   create .venv if missing, install, run every notebook headless (PROFILE=smoke|laptop|gpu;
#                 ARGS=--dry-run: the profile's sizes with a few steps each, to check memory before a GPU pod)
#   make test     create .venv if missing, install, run the test suite and the notebooks under nbval
#   make demo     serve the live agent (plain page at http://127.0.0.1:7860/, Gradio demo at /demo) from the newest
#                 trained run; with none yet, runs the missing laptop-profile notebooks first (ARGS=--public to
#                 bind every interface, ARGS="--port 8000", ...)
# Also: make lab (JupyterLab on notebooks/), make list (notebooks and parameters), make strip (clear notebook
# outputs before a commit), make clean.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?=
OUT ?=
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install course test demo lab list clean strip

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: the course needs Python 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)."; \
	  echo "       Install Python 3.11 and run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q -e .
	@touch $(STAMP)

course: install
	$(PY) -m s2slib.course run $(if $(PROFILE),--profile $(PROFILE)) $(if $(OUT),--out $(OUT)) $(ARGS)

# Every course notebook executed by nbval at the smoke profile and the unit and smoke tests, on one pytest-xdist
# worker per core (PYTEST_ARGS="-n 0" for one process), each process on one PyTorch thread so that the workers
# and the processes they start do not fight over the cores: tests/conftest.py keeps the notebooks in order on one
# worker, sharing one run directory under build/nbval. pytest's exit code 5 means it collected no tests: reported
# as a failure.
test: install
	@rm -rf build/nbval
	$(PY) -m s2slib.course prepare --profile smoke --out build/nbval -p torch_threads=1 -p train_threads=1
	@S2S_FIGURES_DIR=build/test-figures OMP_NUM_THREADS=1 $(PY) -m pytest build/nbval/notebooks tests -n auto \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=900 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit code 5); the test suite is missing"; fi; \
	exit $$rc

demo: install
	$(PY) -m s2slib.agent.serve --train-missing $(ARGS)

lab: install
	$(PY) -m jupyter lab notebooks/

list: install
	$(PY) -m s2slib.course list $(if $(PROFILE),--profile $(PROFILE))

clean:
	rm -rf build .pytest_cache

# Remove outputs from the course notebooks before committing (tests/test_notebooks.py checks they are clean).
strip: install
	$(PY) -m jupyter nbconvert --clear-output --inplace notebooks/[0-9][0-9]_*.ipynb
