#!/usr/bin/env bash
# `make observe`: Prometheus on loopback scraping the local Ray cluster with
# Tierserve's rules; prints the Ray dashboard and Prometheus URLs. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null; then
  echo "prometheus not found: sudo apt-get install -y prometheus (Debian/Ubuntu)" >&2
  exit 2
fi
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" -m tooling.observability.local_prometheus --port "${PROMETHEUS_PORT:-9090}" "$@"
