# paretrain: `make demo` and `make test` work on a fresh clone (they install what they need).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.paretrain-installed
DEMO   ?= demo-output
# The tests run on every core (pytest-xdist, `-n auto`), a module's tests on one worker
# (`--dist loadscope`: its shared fixtures are built once). PYTEST_WORKERS=0 runs them in one
# process; PYTEST_ARGS adds options (`PYTEST_ARGS='-k budget'`).
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?= --durations=10
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

.PHONY: install system-deps demo check test test-fast test-slow bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: 2.13.0 is the CPU build this machine carries (an unpinned torch pulls a
# multi-GB CUDA build). The project's range (torch>=2.2) then accepts it as installed.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the tests drive (chromium for the MLflow UI test, PostgreSQL's server binaries);
# installed when missing, a one-line message when they cannot be.
system-deps:
	@bash scripts/system-deps.sh

demo: install
	@mkdir -p $(DEMO)
	@start=$$(date +%s); \
	cd $(DEMO) && \
	$(abspath $(VENV))/bin/paretrain init . --force && \
	$(abspath $(VENV))/bin/paretrain plan mnist1d.yaml -o plan.json && \
	$(abspath $(VENV))/bin/paretrain run plan.json --candidate accurate && \
	$(abspath $(VENV))/bin/paretrain compare --experiment mnist1d-demo -o compare.png && \
	echo "demo: done in $$(( $$(date +%s) - start )) s; files in $(DEMO)/ (plan.json, pareto.png, compare.png, mlflow.db)"

# The house's checks: lint and format (ruff), types (mypy), the import contracts (import-linter).
check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Everything, in order: the checks, the fast tests, then the slow end-to-end ones (real training,
# real servers). Each step stops `make test` when it fails.
test: install system-deps check
	$(PYTEST) -m "not slow"
	$(PYTEST) -m slow

test-fast: install system-deps
	$(PYTEST) -m "not slow"

test-slow: install system-deps
	$(PYTEST) -m slow

bench: install
	$(PY) benchmarks/planner_scaling.py

clean:
	rm -rf $(DEMO) .pytest_cache
