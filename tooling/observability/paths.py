"""Where the monitoring files live, relative to the repository root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = REPO_ROOT / "kuberay" / "chart" / "files" / "monitoring"
SLO_FILE = MONITORING_DIR / "slo.yaml"
RULES_FILE = MONITORING_DIR / "prometheus-rules.yaml"
DASHBOARDS_DIR = MONITORING_DIR / "dashboards"
NAMES_DIR = Path(__file__).resolve().parent / "names"
VLLM_NAMES_FILE = NAMES_DIR / "vllm-metric-names.txt"
DCGM_NAMES_FILE = NAMES_DIR / "dcgm-metric-names.txt"
TIERSERVE_METRICS_MODULE = REPO_ROOT / "deployments" / "metrics.py"
# shared/ sits beside the checkout, in development and in CI alike.
RAY_NAMES_FILE = REPO_ROOT.parent / "shared" / "reference" / "ray-2.60.0" / "metric-names-live-serve-app.txt"
PROM_OPERATOR_CRDS = REPO_ROOT.parent / "shared" / "reference" / "prometheus-operator"
