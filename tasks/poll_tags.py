"""List an image repository's tags over the OCI distribution API and pick the newest one
a policy allows: the fallback trigger where registry webhooks are impossible.

Pure core: :func:`select_tag` (semver constraint, allow and ignore patterns). Edge:
:func:`list_tags` (the registry client of :mod:`shipyard.core.registry`: ``Link``
pagination and the bearer-token challenge). The Prefect task is
:func:`tasks.steps.image.poll_tags`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from semver import Version

from shipyard.core.registry import RegistryAuth, open_client

_CONSTRAINT = re.compile(
    r"^\s*(>=|<=|>|<|==|!=|\^|~)?\s*v?(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?)\s*$"
)


class TagPolicy(BaseModel):
    """Which tags count as candidates, and how they are ordered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    semver: str | None = Field(
        None,
        description="Comma-separated constraints, e.g. '>=1.2.0,<2' or '^1.4' or '~1.4.2'. "
        "Tags that are not semver (an optional 'v' prefix is allowed) are skipped.",
    )
    allow: str | None = Field(None, description="Regex a tag must match (full match).")
    ignore: list[str] = Field(
        default_factory=lambda: ["latest"], description="Regexes of tags never picked."
    )
    prereleases: bool = Field(False, description="Consider prereleases such as 1.2.0-rc.1.")

    @field_validator("semver")
    @classmethod
    def _valid_constraint(cls, value: str | None) -> str | None:
        if value is not None:
            for part in value.split(","):
                if not _CONSTRAINT.match(part):
                    raise ValueError(f"semver constraint {part.strip()!r} is not understood")
        return value

    @field_validator("allow")
    @classmethod
    def _valid_allow(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


def parse_version(tag: str) -> Version | None:
    """The semver in ``tag`` (``1.2.3``, ``v1.2``, ``1.2.3-rc.1``), or None."""
    text = tag[1:] if tag[:1] in {"v", "V"} else tag
    parts = text.split("-", 1)
    nums = parts[0].split(".")
    if not 1 <= len(nums) <= 3 or not all(n.isdigit() for n in nums):
        return None
    nums += ["0"] * (3 - len(nums))
    try:
        return Version.parse(".".join(nums) + (f"-{parts[1]}" if len(parts) > 1 else ""))
    except ValueError:
        return None


def _satisfies(version: Version, constraint: str) -> bool:
    for part in constraint.split(","):
        match = _CONSTRAINT.match(part)
        assert match is not None  # validated by TagPolicy
        op, raw = match.group(1) or "==", match.group(2)
        bound = parse_version(raw)
        assert bound is not None
        if op == "^":
            upper = bound.bump_major() if bound.major else bound.bump_minor()
            ok = bound <= version < upper
        elif op == "~":
            ok = bound <= version < bound.bump_minor()
        else:
            ok = {
                ">=": version >= bound,
                "<=": version <= bound,
                ">": version > bound,
                "<": version < bound,
                "==": version == bound,
                "!=": version != bound,
            }[op]
        if not ok:
            return False
    return True


def select_tag(tags: Iterable[str], policy: TagPolicy) -> str | None:
    """The newest allowed tag: highest semver when a constraint is set, else the last
    allowed tag in lexical order (registries list tags lexically). None if none fit."""
    ignore = [re.compile(p) for p in policy.ignore]
    allow = re.compile(policy.allow) if policy.allow else None
    candidates = [
        t
        for t in tags
        if not any(p.fullmatch(t) for p in ignore) and (allow is None or allow.fullmatch(t))
    ]
    if policy.semver is None:
        return max(candidates) if candidates else None
    best: tuple[Version, str] | None = None
    for tag in candidates:
        version = parse_version(tag)
        if version is None or (version.prerelease and not policy.prereleases):
            continue
        if _satisfies(version, policy.semver) and (best is None or version > best[0]):
            best = (version, tag)
    return best[1] if best else None


def list_tags(
    registry: str,
    repository: str,
    *,
    username: str | None = None,
    password: SecretStr | None = None,
    insecure: bool = False,
    page_size: int = 1000,
    timeout: float = 10.0,
) -> list[str]:
    """Every tag of ``registry/repository``, following pagination and token auth.

    An unknown repository is a ConfigError; an unreachable registry is transient.
    """
    logged_in = bool(username) and password is not None
    login = RegistryAuth(
        registry, username if logged_in else None, password if logged_in else None, insecure
    )
    with open_client(login, timeout) as client:
        return client.tags(repository, page_size)


def newest_allowed_tag(
    registry: str,
    repository: str,
    policy: TagPolicy,
    *,
    username: str | None = None,
    password: SecretStr | None = None,
    insecure: bool = False,
) -> str | None:
    """List the repository's tags and return the newest one the policy allows."""
    return select_tag(
        list_tags(registry, repository, username=username, password=password, insecure=insecure),
        policy,
    )
