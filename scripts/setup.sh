#!/usr/bin/env bash
# Set up Shipyard on a Debian/Ubuntu machine: the system packages its local stack runs
# (installed with apt when run as root; otherwise it says what to install), a virtualenv
# in .venv, and the project with its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# podman+runc: the Docker Engine API; docker-registry: CNCF Distribution;
# busybox-static: the base image layer (no public registry is needed); git: git daemon;
# chromium: the browser tests drive the Prefect UI; golang-go + bbolt: the tests build a
# tiny trivy vulnerability DB (no DB can be downloaded here); prometheus (with promtool)
# and prometheus-alertmanager: the stack's monitoring and the alert-rule unit tests;
# postgresql and redis-server: the production profile (`stack up --database postgresql
# --messaging redis`).
APT_PACKAGES=(podman runc docker-registry busybox-static git ca-certificates chromium
              golang-go golang-github-coreos-bbolt-dev prometheus prometheus-alertmanager
              postgresql redis-server)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

# kubectl (>= 1.27, kustomize v5 built in): sync renders GitOps paths with
# `kubectl kustomize`, and the tests drive the simulator with it. No apt package carries it.
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
  echo "setup: kubectl >= 1.27 (with kustomize v5) is required on PATH" >&2
  echo "setup: install it from https://kubernetes.io/docs/tasks/tools/ (e.g. the kubectl binary of dl.k8s.io)" >&2
  exit 2
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# The cluster simulator is its own distribution (tests and demo only), installed beside
# the project with its test extra.
.venv/bin/python -m pip install -q -e ./packages/simcluster -e ".[test,redis]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/shipyard --help >/dev/null
echo "setup: ready (.venv/bin/shipyard)"
