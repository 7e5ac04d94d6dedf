"""Input every command reads the same way: the kubeconfig and image references.

One place decides, so `verify`, `sync`, `backup` and `restore-drill` find a cluster
alike, and an image reference or tag that is not one is refused before any step runs
(a ConfigError: one line, exit 2), never discovered later by a registry, Docker or
trivy and reported as a failed step (exit 1).
"""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.core.errors import ConfigError
from shipyard.core.oci import (
    ImageRef,
    parse_reference,
    validate_digest,
    validate_name,
    validate_tag,
)

__all__ = ["image_digest", "image_name", "image_reference", "image_tags", "resolve_kubeconfig"]

REGISTERED_DIGESTS = ("sha256", "sha512")  # the OCI image spec's registered algorithms


def resolve_kubeconfig(flag: Path | None) -> Path:
    """The kubeconfig a command talks to the cluster through.

    ``--kubeconfig`` first, then ``$KUBECONFIG`` (its first existing file, as kubectl
    reads a list), then the local stack's env file (found from any subdirectory), then
    ``~/.kube/config``. A named file that does not exist is a ConfigError saying where
    the name came from; so is finding none at all.
    """
    if flag is not None:
        return _existing(flag, "--kubeconfig")
    variable = os.environ.get("KUBECONFIG", "").strip()
    if variable:
        entries = [Path(e).expanduser() for e in variable.split(os.pathsep) if e.strip()]
        for entry in entries:
            if entry.is_file():
                return entry
        raise ConfigError(f"KUBECONFIG={variable} names no existing file")
    from shipyard.stack.model import StackLayout
    from shipyard.stack.runner import read_env_file

    layout = StackLayout.from_env()
    stacked = read_env_file(layout).get("KUBECONFIG")
    if stacked:
        return _existing(Path(stacked), f"KUBECONFIG of the local stack ({layout.env_file})")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return default
    raise ConfigError(
        "no kubeconfig: pass --kubeconfig FILE, set KUBECONFIG, "
        "or start the local stack with 'shipyard stack up'"
    )


def _existing(path: Path, source: str) -> Path:
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"{source} {str(path)!r} is not a file")
    return path


def image_reference(text: str) -> ImageRef:
    """``[registry/]path[:tag][@digest]`` checked against the OCI grammar."""
    ref = parse_reference(text)
    if ref is None or text != text.strip():
        raise ConfigError(
            f"invalid image reference {text!r}: expected [registry/]path/name[:tag][@digest] "
            "with a lower-case name"
        )
    if ref.digest is not None:
        image_digest(ref.digest)
    return ref


def image_digest(text: str) -> str:
    """A digest of a registered OCI algorithm (sha256 or sha512) with its hex length."""
    if text.partition(":")[0] not in REGISTERED_DIGESTS:
        raise ConfigError(f"invalid digest {text!r}: expected sha256:<64 hex> (or sha512)")
    return validate_digest(text)


def image_name(text: str) -> str:
    """An image repository (no tag, no digest), checked against the OCI grammar."""
    return validate_name(text)


def image_tags(tags: list[str] | None) -> list[str]:
    """Each of ``tags`` checked as an OCI tag."""
    return [validate_tag(tag) for tag in tags or []]
