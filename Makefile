# devprov: `make serve` runs the server on the embedded default, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: serve test lint typecheck unit bench clean node-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/devprov serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Microsoft's Node device and service SDKs for tests/interop/test_node_*.py, as pinned by the lock
# file. Reinstalled when the lock file is newer than npm's record of the last install; skipped
# without npm (those tests then skip, or run `npm ci` themselves when only node_modules is
# missing). `make serve` never needs Node.
NODE_DIR := tests/interop/node

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --prefix $(NODE_DIR)
	touch $@

node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(NODE_DIR)/node_modules/.package-lock.json; \
	else \
		echo "npm not found: skipping $(NODE_DIR) (the Node SDK interop tests will skip)"; \
	fi

unit: $(STAMP) node-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/possession.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
