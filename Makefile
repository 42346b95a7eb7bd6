# Tierserve: the two commands a newcomer needs are `make up` and `make test`.
.PHONY: setup up down test test-fast observe loadtest bench render

setup:
	@bash scripts/setup.sh

up: setup
	.venv/bin/tierserve up

down:
	.venv/bin/tierserve down

test: setup
	.venv/bin/pytest -q

test-fast: setup
	.venv/bin/pytest -q -m "not e2e"

render: setup
	.venv/bin/tierserve config render

observe: setup
	bash scripts/observe.sh $(ARGS)

loadtest: setup
	.venv/bin/tierserve loadtest $(or $(SCENARIO),mixed) $(ARGS)

bench: setup
	.venv/bin/tierserve bench overhead $(ARGS)
	.venv/bin/tierserve bench router
