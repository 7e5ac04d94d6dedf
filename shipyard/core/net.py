"""Network address helpers shared by the registry credentials and the steps.

Loopback matters because Shipyard's defaults differ there: a registry on
``localhost``/127.0.0.0/8/::1 is a local or test registry, so plain HTTP is the
default for it and for nothing else.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(address: str) -> bool:
    """True for ``localhost[:port]``, 127.0.0.0/8 hosts (with or without a port) and ::1.

    ``address`` is a host with an optional port, as in an image reference's registry.
    """
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
