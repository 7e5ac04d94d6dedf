"""Shipyard: a GitOps continuous-delivery platform built as Prefect 3 flows.

``shipyard.core`` is the foundation every floor shares (errors, redaction, the app
catalog, limits, and the registry, Kubernetes, S3 and git clients). The apps sit on top:
the ``shipyard`` CLI (``shipyard.cli``), the registry bridge, the local stack and the
demo. Step logic lives in the top-level ``tasks`` package, orchestration in ``flows``,
connection settings in ``blocks``.
"""

__version__ = "0.1.0"
