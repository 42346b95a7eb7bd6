"""Tooling: the tierserve command, the local stack, k8s rendering, observability
generators, model tools, routing training. The runtime (app/, deployments/) never
imports it: see the import contract in pyproject.toml."""
