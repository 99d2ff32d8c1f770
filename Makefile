# Two commands: `make demo` (set up, then run the whole service end to end on the embedded synthetic default)
# and `make test` (set up, then run the whole test suite). Both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m api.demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/trial_overhead.py
	$(BIN)/python bench/orchestration_overhead.py
	$(BIN)/python bench/early_stopping.py
	$(BIN)/python bench/api_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
