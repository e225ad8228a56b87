# devprov: `make serve` runs the server on the embedded default, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: serve reset test lint typecheck unit bench clean node-deps system-deps

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

# `make reset` deletes what `make serve` and README's tour create in this directory, and nothing
# else: ./devprov-data (the database, the server's TLS keys, the admin token) and ./pki (the
# tour's test PKI). Fixed relative paths, never DEVPROV_DATA_DIR or --data-dir; rm does not
# follow a symbolic link given as an operand. It refuses while a server still answers on the
# port devprov-data/endpoint.json records (stop it with Ctrl+C first).
define SERVER_STILL_RUNNING
import json, socket, sys, urllib.parse
try:
    url = json.load(open("devprov-data/endpoint.json"))["url"]
    where = urllib.parse.urlsplit(url)
    socket.create_connection((where.hostname, where.port), timeout=2).close()
except (OSError, ValueError, KeyError, TypeError):
    sys.exit(0)
sys.exit(f"make reset: a devprov server still answers on {url}; stop it (Ctrl+C) first")
endef
export SERVER_STILL_RUNNING

reset:
	@$(PYTHON) -c "$$SERVER_STILL_RUNNING"
	rm -rf -- ./devprov-data ./pki

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

# System packages the tests use beyond Python: HAProxy, for tests/e2e/test_haproxy.py (a real load
# balancer in front of two instances), Debian's chromium, which Playwright drives for the
# browser tests of tests/portal (Playwright's own browser download cannot work here: only the
# package registries are reached), and Mosquitto with its dynamic-security plugin and
# mosquitto_ctrl, for tests/hub (the mosquitto hub kind). chromium counts as present at
# SYSTEM_CHROMIUM, where Debian puts it, or on PATH; mosquitto at SYSTEM_MOSQUITTO (/usr/sbin,
# which a user's PATH may lack) or on PATH. Whatever is missing is installed with one apt-get call when this can be
# done without asking (root and apt-get present); otherwise one line says why not, and the tests
# that need it skip with their reason. `make serve` never needs any of them.
SYSTEM_CHROMIUM ?= /usr/bin/chromium
SYSTEM_MOSQUITTO ?= /usr/sbin/mosquitto
# package:the tests that skip without it
SYSTEM_DEPS := haproxy:tests/e2e/test_haproxy.py chromium:tests/portal mosquitto:tests/hub

system-deps:
	@missing=""; users=""; \
	for entry in $(SYSTEM_DEPS); do \
		package=$${entry%%:*}; \
		if command -v "$$package" >/dev/null 2>&1; then continue; fi; \
		if [ "$$package" = chromium ] && [ -x "$(SYSTEM_CHROMIUM)" ]; then continue; fi; \
		if [ "$$package" = mosquitto ] && [ -x "$(SYSTEM_MOSQUITTO)" ]; then continue; fi; \
		missing="$${missing:+$$missing }$$package"; users="$${users:+$$users, }$${entry#*:}"; \
	done; \
	if [ -z "$$missing" ]; then \
		:; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "$$missing not found and not root: not installing ($$users will skip)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "$$missing not found and no apt-get: not installing ($$users will skip)"; \
	else \
		echo "installing $$missing with apt-get"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 \
			&& apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1; } \
		|| echo "apt-get could not install $$missing ($$users will skip)"; \
	fi

unit: $(STAMP) node-deps system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/possession.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache test-artifacts
