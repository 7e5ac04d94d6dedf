"""``shipyard exporter``: Shipyard's delivery, DR and platform metrics for Prometheus.

Derived from Prefect's events and flow runs (short-lived flow pods need no push
gateway): :mod:`.prefect_api` reads them, :mod:`.snapshot` turns them into figures (pure),
:mod:`.collector` renders the last snapshot, :mod:`.server` serves ``/metrics`` and
``/healthz`` and refreshes every interval.
"""
