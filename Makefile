# Targets: demo and test (both create .venv on first use), lint, benchmark, clean.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY ?= true
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test lint benchmark clean

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export,speech]'
	touch $@

demo: $(VENV)/.installed-dev
	$(PY) -m pipelines demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check lstm_models pipelines tests benchmarks

benchmark: $(VENV)/.installed-dev
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) mlflow.db optuna.db mlruns .pytest_cache
