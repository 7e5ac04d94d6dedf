"""`shipyard set-image`: set an image's tag or digest in a GitOps working tree.

Contract: exit 0 whether or not anything changed; unusable input is a ConfigError
(one stderr line, exit 2) raised before anything is written. ``--json`` prints
``{"changed", "changes": [{"file", "old", "new"}], "commit"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.core.errors import ConfigError
from shipyard.core.redact import redact


def register(app: typer.Typer) -> None:
    """Add the ``set-image`` command to ``app``."""

    @app.command("set-image")
    def set_image_command(
        repo_dir: Annotated[
            Path | None, typer.Option("--repo-dir", help="Root of the GitOps working tree.")
        ] = None,
        path: Annotated[
            str, typer.Option("--path", help="File or directory under --repo-dir to edit.")
        ] = ".",
        image: Annotated[
            str | None, typer.Option("--image", help="Image repository, without tag or digest.")
        ] = None,
        tag: Annotated[str | None, typer.Option("--tag", help="New tag.")] = None,
        digest: Annotated[
            str | None, typer.Option("--digest", help="New digest (sha256:...).")
        ] = None,
        commit: Annotated[
            bool, typer.Option("--commit", help="Commit the change in --repo-dir (if any).")
        ] = False,
        values_image_key: Annotated[
            str | None,
            typer.Option(
                "--values-image-key",
                help="Helm values: dotted key holding a whole reference repo:tag (app.image).",
            ),
        ] = None,
        values_repository_key: Annotated[
            str | None,
            typer.Option(
                "--values-repository-key",
                help="Helm values: dotted key of the repository; edited only where it is IMAGE.",
            ),
        ] = None,
        values_tag_key: Annotated[
            str | None,
            typer.Option("--values-tag-key", help="Helm values: dotted key of the tag."),
        ] = None,
        values_digest_key: Annotated[
            str | None,
            typer.Option(
                "--values-digest-key",
                help="Helm values: dotted key of the digest, for charts without a 'digest:' "
                "key (added beside the tag when missing).",
            ),
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    ) -> None:
        """Set IMAGE to TAG or DIGEST in kustomizations, Helm values and manifests under PATH.

        Helm values are found by their layout (repository/tag/digest, a whole image
        reference); a chart with other key names is named with the --values-*-key flags.
        """
        from shipyard.cli.runner import run_flow
        from tasks.commit_local import is_git_tree
        from tasks.set_image import SetImageConfig

        if repo_dir is None:
            raise ConfigError("--repo-dir is required")
        if image is None:
            raise ConfigError("--image is required")
        if (tag is None) == (digest is None):
            raise ConfigError("give exactly one of --tag or --digest")
        if not repo_dir.is_dir():
            raise ConfigError(f"--repo-dir {str(repo_dir)!r} is not a directory")
        if commit and not is_git_tree(repo_dir):
            raise ConfigError(f"--commit: {str(repo_dir)!r} is not a git working tree")
        keys = {
            "image": values_image_key,
            "repository": values_repository_key,
            "tag": values_tag_key,
            "digest": values_digest_key,
        }
        given = {k: v for k, v in keys.items() if v is not None}
        config = SetImageConfig.parse(
            path=path, image=image, tag=tag, digest=digest, values_keys=[given] if given else []
        )
        from flows import steps

        edit = run_flow(steps.set_image_step, steps.set_image_steps, str(repo_dir), config, commit)
        result, sha = edit.result, edit.commit
        if json_out:
            report = {
                "changed": result.changed,
                "changes": [c.as_json() for c in result.changes],
                "commit": sha,
            }
            typer.echo(json.dumps(report))
            return
        if not result.changed:
            typer.echo(f"{config.image}: already {config.target.removeprefix(config.image)}")
        for change in result.changes:
            typer.echo(redact(f"{change.file}: {change.old} -> {change.new}"))
        if sha:
            typer.echo(f"committed {sha}")
