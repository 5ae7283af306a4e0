# Two commands on a fresh machine: `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
MSSGW   := $(VENV)/bin/mssgw
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
# The OpenID provider the tests start (node-oidc-provider), installed from its lock file.
OIDC_DIR   := tests/oidc
OIDC_STAMP := $(OIDC_DIR)/node_modules/.installed

.PHONY: run test test-deps lint bench system-deps venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Initialise on the embedded default (idempotent), register the demo population, load the drug
# reference from the official BDPM files when they are beside the project (../shared/bdpm or
# $$MSSGW_SHARED/bdpm), serve.
BDPM ?= $(or $(MSSGW_SHARED),../shared)/bdpm
run: $(STAMP)
	$(MSSGW) init --demo
	@if [ -d "$(BDPM)" ]; then $(MSSGW) drugs import --if-empty "$(BDPM)" | tail -n 1; \
	else echo "no BDPM folder at $(BDPM): doctors can name drugs only after 'mssgw drugs import DIR'"; fi
	$(MSSGW) serve

# Debian packages the tests drive (mail clients, PDF tools...). Installed only when we are root
# on Debian; otherwise the tests that need them skip with a reason (and fail under CI=true).
system-deps:
	@bash tools/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# npm packages the tests run (into the project, never globally), exactly as the lock file says.
# Without npm the tests that need them skip with the reason (and fail under CI=true).
test-deps: system-deps
	@if [ -f $(OIDC_STAMP) ] && [ $(OIDC_STAMP) -nt $(OIDC_DIR)/package-lock.json ]; then :; \
	elif command -v npm >/dev/null; then \
	  npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error && touch $(OIDC_STAMP); \
	else echo "test-deps: npm is missing: the OpenID provider tests will skip"; fi

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(OIDC_DIR)/node_modules
