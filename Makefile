# Two commands on a fresh machine with Python >= 3.11:
#   make run    create .venv, install, run the main job (generate + optimize + report, MLflow)
#   make test   create .venv, install with the dev and chemprop extras, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Installed first and on its own: an unpinned torch pulled in by a dependency resolves to the
# newest CUDA build (several GB). 2.13.0 is the CPU wheel these machines carry; override with
# e.g. `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: run test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "molvae needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,chemprop]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/molvae run

# PYTHONDONTWRITEBYTECODE= (empty: unset) for the suite: pytest keeps the test modules and
# hypothesis (a pytest plugin: all of it is assertion-rewritten) as rewritten .pyc files, which
# a set PYTHONDONTWRITEBYTECODE (some images set it) makes every test process redo (~2 s each).
test: $(VENV)/.installed-dev
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist load

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check molvae flows tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/sampling.py

clean:
	rm -rf $(VENV) .molvae_cache runs mlruns mlflow.db .pytest_cache
