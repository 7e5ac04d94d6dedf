"""Promotion by digest, the GitOps block's credentials, and the commit-and-push task."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from blocks.gitops import GitOpsRepository
from shipyard.core.catalog import load_catalog
from shipyard.core.errors import ConfigError, PolicyError, retry_condition
from shipyard.core.git import GitWriteConfig, approval_trailers
from shipyard.core.limits import git_writers_limit
from shipyard.core.redact import redact
from tasks.git_write import ImageUpdate, write_back
from tasks.promote_image import PromoteImageConfig, image_update, plan_promotion
from tasks.pull_request import PullRequestConfig
from tasks.set_image import SetImageConfig, set_image
from tasks.steps.gitops import commit_and_push, plan_promote, promote, pull_request
from tests.tasks.fakes.git_hosting import FakeGitHosting
from tests.tasks.gitops_repo import git, make_remote, show, subjects

IMAGE = "registry.example/shop/cart"
VERIFIED = "sha256:" + "5e" * 32
OTHER = "sha256:" + "0f" * 32
CATALOG = f"""apiVersion: shipyard.dev/v1
apps:
  - name: cart
    image: {IMAGE}
    environments:
      - {{name: staging, path: apps/cart/staging, namespace: shop}}
      - {{name: prod, path: apps/cart/prod, namespace: shop}}
      - {{name: audit, path: apps/cart/audit, namespace: shop, pull_request: true}}
"""


def _tree(staging_ref: str) -> dict[str, str]:
    return {
        "shipyard-catalog.yaml": CATALOG,
        "apps/cart/staging/kustomization.yaml": (
            "images:\n  - name: cart\n    newName: " + IMAGE + "\n" + _pins(staging_ref)
        ),
        "apps/cart/prod/values.yaml": (
            f'image:\n  repository: {IMAGE}\n  tag: v1.0.0\n  digest: ""  # set by shipyard\n'
        ),
        "apps/cart/audit/values.yaml": f"image:\n  repository: {IMAGE}\n  tag: v1\n  digest: ''\n",
    }


def _pins(ref: str) -> str:
    tag, _, digest = ref.partition("@")
    out = f"    newTag: {tag}\n" if tag else ""
    return out + (f"    digest: {digest}\n" if digest else "")


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_plan_sets_next_environment_to_verified_digest(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    plan = plan_promotion(
        root,
        load_catalog(root),
        PromoteImageConfig(app="cart", from_environment="staging", digest=VERIFIED),
    )
    assert plan.target.name == "prod"
    sic = plan.update.set_image
    assert (sic.path, sic.image, sic.tag, sic.digest) == (
        "apps/cart/prod",
        IMAGE,
        "v1.1.0",
        VERIFIED,
    )
    result = set_image(root, sic)
    assert result.changes[0].new == f"{IMAGE}:v1.1.0@{VERIFIED}"
    text = (root / "apps/cart/prod/values.yaml").read_text()
    expected = f'image:\n  repository: {IMAGE}\n  tag: v1.1.0\n  digest: "{VERIFIED}"'
    assert text == expected + "  # set by shipyard\n"


def test_plan_uses_pinned_digest_when_none_given(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    plan = plan_promotion(
        root, load_catalog(root), PromoteImageConfig(app="cart", from_environment="staging")
    )
    assert plan.update.set_image.digest == VERIFIED


def test_plan_refuses_unverified_digest(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree(f"v1.1.0@{OTHER}"))
    with pytest.raises(PolicyError, match="promote what was verified"):
        plan_promotion(
            root,
            load_catalog(root),
            PromoteImageConfig(app="cart", from_environment="staging", digest=VERIFIED),
        )


def test_plan_refuses_tag_only_without_verified_digest(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree("v1.1.0"))
    with pytest.raises(PolicyError, match="by digest only"):
        plan_promotion(
            root, load_catalog(root), PromoteImageConfig(app="cart", from_environment="staging")
        )


def test_plan_errors_name_the_problem(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree(f"v1@{VERIFIED}"))
    catalog = load_catalog(root)
    with pytest.raises(ConfigError, match="last environment"):
        plan_promotion(root, catalog, PromoteImageConfig(app="cart", from_environment="audit"))
    with pytest.raises(ConfigError, match="no app 'web'"):
        plan_promotion(root, catalog, PromoteImageConfig(app="web", from_environment="staging"))
    with pytest.raises(ConfigError, match="no environment 'qa'"):
        plan_promotion(root, catalog, PromoteImageConfig(app="cart", from_environment="qa"))


def test_promote_task_pushes_to_target(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    repo = GitOpsRepository(url=str(bare), author_name="Bot", author_email="b@x")
    result = promote.fn(
        repo,
        PromoteImageConfig(
            app="cart", from_environment="staging", digest=VERIFIED, source_commit="f00"
        ),
    )
    assert result.changed
    assert VERIFIED in show(bare, "apps/cart/prod/values.yaml")
    assert subjects(bare)[0] == f"cart(prod): {IMAGE} v1.0.0 -> v1.1.0@{VERIFIED[7:19]}"
    with pytest.raises(PolicyError, match="pull request"):
        promote.fn(repo, PromoteImageConfig(app="cart", from_environment="prod"))


def test_write_back_with_the_block_settings(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, _tree(f"v1@{VERIFIED}"))
    repo = GitOpsRepository(
        url=str(bare), author_name="Bot", author_email="b@x", token=SecretStr("tok-123456")
    )
    update = ImageUpdate(set_image=SetImageConfig(path="apps/cart/prod", image=IMAGE, tag="v2"))
    with repo.git_environment() as env:
        result = write_back(repo.url, [update], repo.write_config(), env=env)
    assert result.changed and "tag: v2" in show(bare, "apps/cart/prod/values.yaml")


def test_task_is_wired_for_transient_retries() -> None:
    assert commit_and_push.retry_condition_fn is retry_condition
    assert commit_and_push.retries == 3
    name = git_writers_limit("https://user:pw@git.example/org/gitops.git", "release/1")
    assert name.startswith("shipyard-gitops-write-gitops.git:release-1-")
    assert not set("/%&<>") & set(name) and "pw" not in name
    other = git_writers_limit("https://git.other/org/gitops.git", "release/1")
    assert other != name and len(other) == len(name)


def test_block_git_environment_keeps_token_secret(tmp_path: Path) -> None:
    repo = GitOpsRepository(
        url="https://user:pw@git.example/org/gitops.git",
        token=SecretStr("s3cr3t-token"),
        ssh_key=SecretStr("KEY"),
        api="github",
    )
    with repo.git_environment() as env:
        header = env["GIT_CONFIG_VALUE_0"]
        basic = header.split()[-1]
        assert base64.b64decode(basic).decode() == "x-access-token:s3cr3t-token"
        key_file = Path(env["GIT_SSH_COMMAND"].split()[2])
        assert key_file.read_text() == "KEY\n" and oct(key_file.stat().st_mode)[-3:] == "600"
        assert "s3cr3t-token" not in redact(f"{header} s3cr3t-token")
    assert not key_file.exists()
    assert repo.safe_url() == "https://git.example/org/gitops.git"
    assert repo.project_path() == "org/gitops"
    assert repo.api_headers() == {"Authorization": "Bearer s3cr3t-token"}
    assert "s3cr3t-token" not in repr(repo)
    config = repo.write_config(max_attempts=3)
    assert isinstance(config, GitWriteConfig) and config.max_attempts == 3
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_plan_promote_then_pull_request_for_protected_target(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    hosting = FakeGitHosting({"acme/gitops": bare}, auto_merge_after_polls=1).start()
    try:
        repo = GitOpsRepository(
            url=str(bare),
            api="github",
            api_url=hosting.github_api,
            project="acme/gitops",
            token=SecretStr("test-token"),
        )
        plan = plan_promote.fn(
            repo,
            PromoteImageConfig(
                app="cart", from_environment="staging", to_environment="audit", digest=VERIFIED
            ),
        )
        assert plan.target.pull_request
        result = pull_request.fn(
            repo,
            [plan.update],
            PullRequestConfig(wait_for_merge=True, poll_seconds=0.01),
            repo.write_config(branch=plan.target.branch),
        )
        assert result.merged_commit == git("rev-parse", "main", cwd=bare).strip()
        assert VERIFIED in show(bare, "apps/cart/audit/values.yaml")
    finally:
        hosting.stop()


def test_image_update_from_catalog(tmp_path: Path) -> None:
    root = _write(tmp_path, _tree("v1"))
    app = load_catalog(root).app("cart")
    update = image_update(app, app.environment("prod"), tag="v9", source_commit="abc")
    assert update.set_image.path == "apps/cart/prod" and update.set_image.image == IMAGE
    assert (update.app, update.environment) == ("cart", "prod")
    with pytest.raises(ConfigError, match="invalid tag"):
        image_update(app, app.environment("prod"), tag="bad tag")


def _trailers(bare: Path, ref: str = "main") -> list[str]:
    """The trailers git itself parses from the commit message at ``ref``."""
    message = git("log", "-1", "--format=%B", ref, cwd=bare)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parsed.splitlines()


def test_approved_promotion_commit_carries_approver_and_reason(tmp_path: Path) -> None:
    """Approved-by: and Reason: are real git trailers of the promotion commit."""
    bare = make_remote(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    repo = GitOpsRepository(url=str(bare), author_name="Bot", author_email="b@x")
    result = promote.fn(
        repo,
        PromoteImageConfig(
            app="cart",
            from_environment="staging",
            digest=VERIFIED,
            source_commit="f00",
            trailers=approval_trailers("Ana Lima <ana@example.com>", "release 2.1\nafter QA"),
        ),
    )
    assert result.changed
    parsed = _trailers(bare)
    assert "Approved-by: Ana Lima <ana@example.com>" in parsed
    assert "Reason: release 2.1 after QA" in parsed  # one line: nothing leaks into the body
    assert "Source-Commit: f00" in parsed  # the template's own trailers stay one block


def test_approval_given_after_planning_reaches_the_commit(tmp_path: Path) -> None:
    """The flow asks for approval after the plan: with_trailers() carries the answer."""
    bare = make_remote(tmp_path, _tree(f"v1.1.0@{VERIFIED}"))
    repo = GitOpsRepository(url=str(bare), author_name="Bot", author_email="b@x")
    plan = plan_promote.fn(
        repo, PromoteImageConfig(app="cart", from_environment="staging", digest=VERIFIED)
    )
    update = plan.update.with_trailers(approval_trailers("ops-lead", "hotfix for INC-42"))
    result = commit_and_push.fn(repo, [update], repo.write_config(branch=plan.target.branch))
    assert result.commit == git("rev-parse", "main", cwd=bare).strip()
    trailers = git(
        "log", "-1", "--format=%(trailers:key=Approved-by,key=Reason)", "main", cwd=bare
    ).splitlines()
    assert trailers[:2] == ["Approved-by: ops-lead", "Reason: hotfix for INC-42"]


def test_trailer_keys_are_validated() -> None:
    with pytest.raises(ValidationError, match="invalid commit trailer key"):
        PromoteImageConfig(app="cart", from_environment="staging", trailers={"Bad key": "x"})
