# Two commands for a new machine: `make demo` and `make test` (each installs everything first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: install demo check test test-fast test-image bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,nc]"
	touch $@

demo: install
	$(BIN)/imalys-stac demo $(DEMO_DIR)

check: install
	$(BIN)/ruff check imalys_stac tests benchmarks
	$(BIN)/mypy

# Test tiers (docs/testing.md). `test` is what CI runs: lint and types, then every tier with the
# full hypothesis counts; `test-fast` is the development loop: unit + integration, few examples.
# Two xdist workers, a test file on one worker (its module fixtures are built once): --dist
# loadfile (loadgroup does not group under pytest 9 with pytest-xdist 3.8: it renames node ids
# through an attribute pytest 9 no longer reads).
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: install check
	HYPOTHESIS_PROFILE=ci $(PYTEST) -m "not image"

test-fast: install
	HYPOTHESIS_PROFILE=dev $(PYTEST) -m "not system"

# The image test (tests/test_image.py runs deploy/test-image.sh): builds deploy/Dockerfile with
# podman and runs it as the Kubernetes manifests do; minutes, so `make test` leaves it out and CI
# runs it after. Where podman cannot run it is skipped with the reason, unless IMALYS_IMAGE_REQUIRED
# is set (CI sets it: there a skip is a failure).
test-image: install
	$(BIN)/python -m pytest -q -m image

bench: install
	$(BIN)/python -m benchmarks.bench_kernels
	$(BIN)/python -m benchmarks.bench_chain all
	$(BIN)/python -m benchmarks.bench_catalog all --count 1000,10000

clean:
	rm -rf $(DEMO_DIR) .pytest_cache benchmarks/work
