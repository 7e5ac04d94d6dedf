#!/usr/bin/env bash
# Set up everything and run the whole test suite: lint, types, import contracts, then
# pytest against real local services (each test session starts its own stack on free
# loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"  # prefect, trivy and moto_server for subprocesses
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache  # the floors of docs/architecture.md
.venv/bin/python -m pytest -p no:cacheprovider -q "$@"
