#!/usr/bin/env bash
# Set up Shipyard and run its main job on the embedded default: start the local stack of
# real services, seed a demo app and its GitOps repo, deploy every flow to the Kubernetes
# work pool, push a change as CI would and follow the delivery it sets off (registry
# notification -> bridge -> Prefect event -> automation -> Kubernetes worker -> deliver)
# to a verified rollout. Leaves everything running so you can look around in the UI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
shipyard demo
