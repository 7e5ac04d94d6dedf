"""``exec``, ``attach`` and ``portforward``: refused with a clear Status.

The real API server upgrades these requests (SPDY or WebSocket) and proxies them to the
kubelet. The simulator runs no containers to stream from, so it answers, after the same
NotFound checks as the real one (namespace, pod), with 400 BadRequest naming what is not
supported: kubectl prints that message instead of a bare "the server could not find the
requested resource".
"""

from __future__ import annotations

from simcluster import errors
from simcluster.store import Store

STREAMING = {"exec": "exec", "attach": "attach", "portforward": "port-forward"}


def check(store: Store, parts: list[str]) -> None:
    """Raise the Status for ``/api/v1/namespaces/<ns>/pods/<name>/<exec|attach|portforward>``.

    Returns quietly when ``parts`` is not such a path.
    """
    if (
        len(parts) != 7
        or parts[:3] != ["api", "v1", "namespaces"]
        or parts[4] != "pods"
        or parts[6] not in STREAMING
    ):
        return
    rt = store.registry.by_key("", "pods")
    assert rt is not None
    store.get(rt, parts[3], parts[5])
    raise errors.bad_request(
        f"{STREAMING[parts[6]]} is not supported by the simulator "
        f"(pods/{parts[6]} of {parts[3]}/{parts[5]}): it runs no containers to stream from"
    )
