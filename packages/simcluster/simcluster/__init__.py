"""A Kubernetes-API-compatible cluster simulator for tests and the demo (never production)."""
