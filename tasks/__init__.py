"""Pipeline steps: one module per step (typed config, pure core, thin Prefect task)."""

from shipyard.redact import install_log_redaction

install_log_redaction()
