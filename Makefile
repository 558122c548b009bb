# One entry point for people and CI. Everything installs into .venv from
# pyproject.toml, so a machine with only Python can run every target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_single_record.py
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python -m bench.bench_frames
	$(BIN)/python -m bench.bench_drift
	$(BIN)/python -m bench.bench_drift_stage
	$(BIN)/python -m bench.bench_device
	$(BIN)/python -m bench.bench_ab_simulation
	$(BIN)/python -m bench.bench_policy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .driftline .pytest_cache
