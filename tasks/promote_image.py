"""Promote what was verified, never rebuild: set environment B to environment A's digest.

The environments, their order and their paths come from the app catalog in the GitOps
repo (:mod:`shipyard.core.catalog`). :func:`plan_promotion` is pure over a working tree: it
reads the image references environment A's files pin, checks them against the digest the
caller verified, and returns the :class:`~tasks.git_write.ImageUpdate` for environment B
(carrying the promotion's trailers: ``Approved-by:`` and ``Reason:`` when a person
approved it; a flow that asks for approval after planning adds them with
``plan.update.with_trailers(approval_trailers(who, why))``).
:func:`plan_promotion_in` clones the repo and plans there; :func:`promote_image` plans and
pushes to the target environment's branch (targets that take changes through a pull
request are refused: the flow opens one). The tasks ``plan_promote`` and ``promote`` are
in :mod:`tasks.steps.gitops`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.catalog import App, Catalog, Environment, load_catalog
from shipyard.core.errors import ConfigError, PolicyError
from shipyard.core.git import GitWriteConfig, Trailers, clone
from shipyard.core.oci import validate_digest
from tasks.git_write import ImageUpdate, WriteBackResult, push_updates
from tasks.set_image import SetImageConfig, find_images

__all__ = [
    "PromoteImageConfig",
    "Promotion",
    "image_update",
    "plan_promotion",
    "plan_promotion_in",
    "promote_image",
]


class PromoteImageConfig(BaseModel):
    """Which app to promote from which environment to which, and the verified digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str = Field(description="App name in the catalog.")
    from_environment: str = Field(description="Environment whose verified image is promoted.")
    to_environment: str | None = Field(
        None, description="Target environment; default the next one in the catalog."
    )
    digest: str | None = Field(
        None,
        description="Digest verified running in from_environment; when omitted, the digest "
        "from_environment pins in git is used (it must pin exactly one).",
    )
    source_commit: str = Field("", description="Source commit, for the commit message.")
    trailers: Trailers = Field(
        default_factory=dict,
        description="Trailers of the promotion commit, e.g. approval_trailers(who, why) "
        "for Approved-by: and Reason:.",
    )

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_digest(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None


@dataclass(frozen=True)
class Promotion:
    """A planned promotion: the update to apply and the environments involved."""

    update: ImageUpdate
    source: Environment
    target: Environment


def plan_promotion(workdir: str | Path, catalog: Catalog, config: PromoteImageConfig) -> Promotion:
    """The update that sets the target environment to the source's verified digest.

    PolicyError when the source pins a different digest than the verified one, or pins
    several; ConfigError when the app, environments or image cannot be found.
    """
    app = catalog.app(config.app)
    source = app.environment(config.from_environment)
    if config.to_environment is not None:
        target = app.environment(config.to_environment)
    else:
        nxt = app.next_environment(source.name)
        if nxt is None:
            raise ConfigError(f"{app.name}: {source.name!r} is the last environment")
        target = nxt
    if target.name == source.name:
        raise ConfigError(f"{app.name}: cannot promote {source.name!r} onto itself")
    refs = [ref for _, ref in find_images(workdir, source.path, app.image)]
    if not refs:
        raise ConfigError(f"{app.name}: no {app.image} under {source.path!r} ({source.name})")
    pinned = {ref.digest for ref in refs if ref.digest}
    if len(pinned) > 1:
        raise PolicyError(f"{app.name}: {source.name} pins several digests {sorted(pinned)}")
    digest = config.digest or (pinned.pop() if pinned else None)
    if digest is None:
        raise PolicyError(
            f"{app.name}: {source.name} pins no digest and none was verified; "
            "promotion is by digest only"
        )
    if pinned and digest not in pinned:
        raise PolicyError(
            f"{app.name}: {source.name} runs {next(iter(pinned))}, not the verified {digest}; "
            "promote what was verified"
        )
    tags = {ref.tag for ref in refs if ref.tag}
    tag = tags.pop() if len(tags) == 1 else None
    update = ImageUpdate(
        set_image=SetImageConfig(path=target.path, image=app.image, tag=tag, digest=digest),
        app=app.name,
        environment=target.name,
        source_commit=config.source_commit,
        trailers=config.trailers,
    )
    return Promotion(update, source, target)


def image_update(
    app: App,
    environment: Environment,
    *,
    tag: str | None = None,
    digest: str | None = None,
    source_commit: str = "",
) -> ImageUpdate:
    """The update that sets ``app``'s image in ``environment`` (paths from the catalog)."""
    return ImageUpdate(
        set_image=SetImageConfig.parse(
            path=environment.path, image=app.image, tag=tag, digest=digest
        ),
        app=app.name,
        environment=environment.name,
        source_commit=source_commit,
    )


def _plan_in_clone(
    url: str,
    config: PromoteImageConfig,
    base: GitWriteConfig,
    env: Mapping[str, str] | None,
    tmp: Path,
) -> Promotion:
    """Clone the source environment's branch and plan the promotion there."""
    reader = clone(url, tmp / "read", base, env=env)
    try:
        catalog = load_catalog(str(reader.working_tree_dir))
        source_branch = catalog.app(config.app).environment(config.from_environment).branch
        if source_branch != base.branch:
            reader.close()
            source_config = base.model_copy(update={"branch": source_branch})
            reader = clone(url, tmp / "source", source_config, env=env)
        return plan_promotion(str(reader.working_tree_dir), catalog, config)
    finally:
        reader.close()


def plan_promotion_in(
    url: str,
    config: PromoteImageConfig,
    base: GitWriteConfig,
    *,
    env: Mapping[str, str] | None = None,
) -> Promotion:
    """Read the catalog and the source environment from the repo at ``url``; the plan.

    The flow then sends ``plan.update`` to ``commit_and_push`` or, when
    ``plan.target.pull_request``, to ``pull_request``, on ``plan.target.branch``.
    """
    with tempfile.TemporaryDirectory(prefix="shipyard-promote-") as tmp:
        return _plan_in_clone(url, config, base, env, Path(tmp))


def promote_image(
    url: str,
    config: PromoteImageConfig,
    base: GitWriteConfig,
    *,
    env: Mapping[str, str] | None = None,
) -> WriteBackResult:
    """Promote ``config.app`` by digest and push to the target environment's branch.

    Targets with ``pull_request: true`` are refused with a PolicyError: plan with
    :func:`plan_promotion_in` and open a pull request (``tasks.pull_request``) for those.
    """
    with tempfile.TemporaryDirectory(prefix="shipyard-promote-") as tmp:
        plan = _plan_in_clone(url, config, base, env, Path(tmp))
        if plan.target.pull_request:
            raise PolicyError(
                f"{config.app}: {plan.target.name} takes changes through a pull request"
            )
        target_config = base.model_copy(update={"branch": plan.target.branch})
        repo = clone(url, Path(tmp) / "target", target_config, env=env)
        try:
            return push_updates(repo, [plan.update], target_config)
        finally:
            repo.close()
