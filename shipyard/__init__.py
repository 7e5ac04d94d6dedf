"""Shipyard: a GitOps continuous-delivery platform built as Prefect 3 flows.

This package holds what every step shares (errors, the retry predicate, the app
catalog, secret redaction, the local stack's environment) and the ``shipyard`` CLI.
Step logic lives in the top-level ``tasks`` package, orchestration in ``flows``.
"""

__version__ = "0.1.0"
