"""Pipeline steps: one module per step (typed config, pure core, thin Prefect task)."""

from shipyard.core.redact import install_log_redaction

install_log_redaction()
