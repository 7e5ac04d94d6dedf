"""PR mode against a stateful GitHub/GitLab fake on loopback, backed by real bare repos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.gitops import GitOpsRepository
from shipyard.core.errors import PermanentError, TransientError
from tasks.git_write import ImageUpdate
from tasks.pull_request import PullRequestConfig
from tasks.set_image import SetImageConfig
from tasks.steps.gitops import pull_request
from tests.tasks.fakes.git_hosting import FakeGitHosting
from tests.tasks.gitops_repo import git, kustomization, make_remote, show

PROJECT = "acme/gitops"
FAST = PullRequestConfig(poll_seconds=0.01, merge_timeout_seconds=5)


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_remote(
        tmp_path,
        {"prod/kustomization.yaml": kustomization(("shop/cart", "v1"), ("shop/web", "v1"))},
    )


@pytest.fixture
def hosting(bare: Path) -> Iterator[FakeGitHosting]:
    fake = FakeGitHosting({PROJECT: bare}).start()
    yield fake
    fake.stop()


def _repo(
    bare: Path, hosting: FakeGitHosting, api: str, token: str = "test-token"
) -> GitOpsRepository:
    return GitOpsRepository(
        url=str(bare),
        api=api,
        api_url=hosting.github_api if api == "github" else hosting.gitlab_api,
        project=PROJECT,
        token=SecretStr(token),
        author_name="Bot",
        author_email="bot@example.com",
    )


def _update(tag: str = "v2") -> list[ImageUpdate]:
    return [
        ImageUpdate(
            set_image=SetImageConfig(path="prod", image="shop/cart", tag=tag),
            app="cart",
            environment="prod",
        )
    ]


@pytest.mark.parametrize("api", ["github", "gitlab"])
def test_opens_one_request_and_reuses_it(api: str, bare: Path, hosting: FakeGitHosting) -> None:
    main_before = git("rev-parse", "main", cwd=bare).strip()
    repo = _repo(bare, hosting, api)

    first = pull_request.fn(repo, _update(), FAST)

    assert first.request is not None and first.request.state == "open"
    assert first.head_branch and first.head_branch.startswith("shipyard/cart-prod-")
    assert "newTag: v2" in show(bare, "prod/kustomization.yaml", first.head_branch)
    assert git("rev-parse", "main", cwd=bare).strip() == main_before  # base untouched
    [held] = hosting.requests.values()
    assert held.title == "cart(prod): shop/cart v1 -> v2"
    assert held.head_sha == git("rev-parse", first.head_branch, cwd=bare).strip()

    again = pull_request.fn(repo, _update(), FAST)  # a retried task
    assert again.request is not None and again.request.number == first.request.number
    assert len(hosting.requests) == 1
    assert git("rev-list", "--count", f"main..{first.head_branch}", cwd=bare).strip() == "1"


@pytest.mark.parametrize("api", ["github", "gitlab"])
def test_waits_for_merge_and_returns_merge_commit(
    api: str, bare: Path, hosting: FakeGitHosting
) -> None:
    hosting.auto_merge_after_polls = 3
    result = pull_request.fn(
        _repo(bare, hosting, api), _update(), FAST.model_copy(update={"wait_for_merge": True})
    )
    assert result.request is not None and result.request.state == "merged"
    assert result.merged_commit == git("rev-parse", "main", cwd=bare).strip()
    assert "newTag: v2" in show(bare, "prod/kustomization.yaml")


def test_closed_without_merge_is_permanent(bare: Path, hosting: FakeGitHosting) -> None:
    repo = _repo(bare, hosting, "github")
    hosting.auto_close_after_polls = 2
    with pytest.raises(PermanentError, match="closed without merging"):
        pull_request.fn(repo, _update(), FAST.model_copy(update={"wait_for_merge": True}))


def test_wait_deadline_is_transient(bare: Path, hosting: FakeGitHosting) -> None:
    config = FAST.model_copy(update={"wait_for_merge": True, "merge_timeout_seconds": 0.05})
    with pytest.raises(TransientError, match="not merged yet"):
        pull_request.fn(_repo(bare, hosting, "gitlab"), _update(), config)


def test_bad_token_is_permanent_and_not_echoed(bare: Path, hosting: FakeGitHosting) -> None:
    with pytest.raises(PermanentError, match="HTTP 401") as info:
        pull_request.fn(_repo(bare, hosting, "github", token="wrong-token-1"), _update(), FAST)
    assert "wrong-token-1" not in str(info.value)


def test_server_errors_are_transient(bare: Path, hosting: FakeGitHosting) -> None:
    hosting.fail_next = [503]
    with pytest.raises(TransientError, match="HTTP 503") as info:
        pull_request.fn(_repo(bare, hosting, "gitlab"), _update(), FAST)
    assert info.value.retry_after == 1.0


def test_nothing_to_change_opens_nothing(bare: Path, hosting: FakeGitHosting) -> None:
    result = pull_request.fn(_repo(bare, hosting, "github"), _update("v1"), FAST)
    assert result.request is None and result.changes == []
    assert hosting.calls == []
