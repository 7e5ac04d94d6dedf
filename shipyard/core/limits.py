"""Names of the Prefect global concurrency limits Shipyard relies on (one formatter).

Prefect limit names allow no ``/``, ``%``, ``&``, ``<``, ``>``; :func:`limit_name` makes a
valid name that stays unique per input (a short hash of it). Creating the limits on the
server (``ensure_limit``) is Prefect's business and lives with the flows
(:func:`flows.common.ensure_limit`); this module only names them, so steps, flows and the CLI agree.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["LIMITS_ADMIN", "git_writers_limit", "limit_name"]

# One slot: whoever creates a missing limit holds it, so concurrent creators (flows in
# other processes) never race the same INSERT on the server (`stack up` creates it).
LIMITS_ADMIN = "shipyard-limits-admin"


def limit_name(kind: str, *parts: str, key: str | None = None) -> str:
    """A valid limit name (no '/', '%', '&', '<', '>') that stays unique per input.

    The name shows ``kind`` and ``parts``; its hash covers ``key`` when given (the full
    identity, for when a part must be shortened, e.g. a URL that may carry credentials),
    else ``parts``.
    """
    raw = ":".join(parts)
    slug = re.sub(r"[^A-Za-z0-9_.:-]+", "-", raw).strip("-")[:80]
    digest = hashlib.sha256((raw if key is None else key).encode()).hexdigest()[:8]
    return f"shipyard-{kind}-{slug}-{digest}"


def git_writers_limit(url: str, branch: str) -> str:
    """The limit that writers of ``url``'s ``branch`` queue on (one slot).

    Named after the repo's last path segment only (the URL may carry credentials); the
    hash covers the whole URL, so repos with the same name stay apart.
    """
    return limit_name("gitops-write", url.rsplit("/", 1)[-1], branch, key=f"{url}#{branch}")
