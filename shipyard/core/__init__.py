"""Shipyard's foundation: errors, redaction, the catalog, limits, and one client each for
OCI registries, Kubernetes, S3 and git. It imports no Prefect, no blocks and no steps, so
every floor above can use it."""
