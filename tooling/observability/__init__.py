"""Observability for Tierserve: Prometheus rules, Grafana dashboards, local Prometheus.

Pure Python (no ray import): everything here reads or writes files and can run
without a cluster. `local_prometheus` starts a process but never starts Ray.
"""
