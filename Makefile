# Two commands: `make demo` (set up, then run the whole service end to end on the embedded synthetic default)
# and `make test` (set up, lint with ruff, then run the whole test suite). Both create .venv on first use and reuse
# it after.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser postgres smoke demo demo-browse verify-backbones test test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Install Debian package $(1) when the shell test $(2) fails and apt-get can run as root; otherwise say which tests
# ($(3)) will be skipped. The tests themselves skip with the reason.
apt_install = $(2) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null) || \
	  echo "$(1) not installed: $(3) will be skipped"; }

# The report's browser test drives Debian's Chromium (no browser download).
browser:
	@$(call apt_install,chromium,command -v chromium,the report's browser test)

# The registry's tests also run against a real PostgreSQL server that they start in a temp dir (Debian's
# `postgresql` binaries).
postgres:
	@$(call apt_install,postgresql,{ ls /usr/lib/postgresql/*/bin/initdb || command -v initdb; },the PostgreSQL registry tests)

demo: $(STAMP)
	$(BIN)/python -m api.demo

demo-browse: $(STAMP)
	$(BIN)/python -m api.demo --browse

# Train the shipped demo backbones again from their sidecars and compare with the shipped files (about 4 minutes).
verify-backbones: $(STAMP)
	$(BIN)/python -m worker.pretrain --verify-shipped

test: $(STAMP) browser postgres lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Build the images and run a tiny sweep on the Compose stack, then remove it all (needs dockerd; minutes; not part
# of `make test`). Options go in SMOKE_ARGS, e.g. SMOKE_ARGS=--local after docker/make-local-base.sh.
smoke:
	docker/smoke.sh $(SMOKE_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/trial_overhead.py
	$(BIN)/python bench/orchestration_overhead.py
	$(BIN)/python bench/early_stopping.py
	$(BIN)/python bench/lars_trust.py
	$(BIN)/python bench/gpu_check.py
	$(BIN)/python bench/api_latency.py
	$(BIN)/python bench/service_limits.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
