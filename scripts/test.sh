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
UI_TEST=tests/flows/test_ui.py::test_deliver_from_the_ui_then_approve_promote_in_the_ui
.venv/bin/python -m pytest -p no:cacheprovider -q --durations=25 --deselect "$UI_TEST" "$@"
# The browser test drives the Prefect UI on a stack of its own: in the shared session its
# UI-started deliver run waited behind earlier tests' runs past its 300 s deadline.
if [ "$#" -eq 0 ]; then
  .venv/bin/python -m pytest -p no:cacheprovider -q "$UI_TEST"
  # The end-to-end path again with Prefect on PostgreSQL (the production profile):
  # deliver (push -> bridge -> worker), promote, rollback, backup + drill, limits. ~4 min.
  SHIPYARD_TEST_DATABASE=postgresql .venv/bin/python -m pytest -p no:cacheprovider -q \
    tests/flows/test_end_to_end.py::test_registry_push_is_delivered_through_the_kubernetes_worker \
    tests/flows/test_deliver.py::test_promote_to_protected_prod_waits_for_approval \
    tests/flows/test_deliver.py::test_a_rollback_shows_on_the_deliver_run \
    tests/flows/test_dr_flows.py::test_cli_backup_then_drill_passes \
    tests/flows/test_limits.py
fi
