"""Prefect flows: orchestration only; they call tasks and branch on results."""

from shipyard.core.redact import install_log_redaction

install_log_redaction()
