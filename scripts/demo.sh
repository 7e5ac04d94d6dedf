#!/usr/bin/env bash
# Set up Shipyard and run its main job on the embedded default: start the local stack
# of real services and run the check-stack flow against it. Leaves the stack running
# so you can look around; stop it with `.venv/bin/shipyard stack down`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/shipyard stack up
.venv/bin/shipyard check
. .shipyard/env
echo
echo "Prefect UI:   ${PREFECT_API_URL%/api}  (Runs -> check-stack -> Artifacts: stack-check)"
echo "Environment:  . .shipyard/env"
echo "Stop it:      .venv/bin/shipyard stack down"
