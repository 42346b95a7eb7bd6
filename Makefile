# Tierserve: the two commands a newcomer needs are `make up` and `make test`.
.PHONY: setup up down test test-fast test-e2e lint format check observe loadtest bench render

setup:
	@bash scripts/setup.sh

up: setup
	.venv/bin/tierserve up

down:
	.venv/bin/tierserve down

# The fast lane first (`make check`: seconds to minutes), then the end-to-end suite on a real
# Ray cluster with vLLM on the CPU.
test: check test-e2e

test-fast: setup
	.venv/bin/pytest -q -m "not e2e"

test-e2e: setup
	.venv/bin/pytest -q -m e2e

# Lint (ruff), types on the serving path (mypy) and the import contract (import-linter); the
# scope and rules of each live in pyproject.toml.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

# The fast lane: lint, types, import contracts, unit tests.
check: lint test-fast

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

render: setup
	.venv/bin/tierserve config render

observe: setup
	bash scripts/observe.sh $(ARGS)

loadtest: setup
	.venv/bin/tierserve loadtest $(or $(SCENARIO),mixed) $(ARGS)

bench: setup
	.venv/bin/tierserve bench overhead $(ARGS)
	.venv/bin/tierserve bench router
