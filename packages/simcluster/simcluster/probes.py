"""Probe defaults, as the API server's defaulting sets them (SetDefaults_Probe)."""

from __future__ import annotations

from typing import Any

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def default_probes(container: dict[str, Any]) -> None:
    """Fill in a container's probes' unset timings (and ``httpGet.scheme: HTTP``)."""
    for name in PROBES:
        probe = container.get(name)
        if not isinstance(probe, dict):
            continue
        for key, value in DEFAULTS.items():
            probe.setdefault(key, value)
        http = probe.get("httpGet")
        if isinstance(http, dict):
            http.setdefault("scheme", "HTTP")
