"""Write-back against real bare remotes: commit, retry on non-fast-forward, concurrency."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.git import GitWriteConfig, clone
from tasks.git_write import (
    ImageUpdate,
    WriteBatcher,
    push_updates,
    render_message,
    write_back,
)
from tasks.set_image import Change, SetImageConfig
from tests.tasks.gitops_repo import (
    fast_forward_only,
    git,
    kustomization,
    make_remote,
    show,
    subjects,
)

FAST = GitWriteConfig(backoff_seconds=0.01, backoff_max_seconds=0.2, max_attempts=40)


def _update(image: str, tag: str, path: str = ".", app: str = "", env: str = "prod") -> ImageUpdate:
    return ImageUpdate(
        set_image=SetImageConfig(path=path, image=image, tag=tag),
        app=app,
        environment=env,
        source_commit="abc1234",
    )


def _shared_file_remote(tmp_path: Path) -> Path:
    return make_remote(
        tmp_path,
        {"prod/kustomization.yaml": kustomization(("shop/cart", "1.0"), ("shop/web", "1.0"))},
    )


def test_write_back_commits_once_and_is_idempotent(tmp_path: Path) -> None:
    bare = _shared_file_remote(tmp_path)
    config = FAST.model_copy(
        update={
            "author_name": "Bot",
            "author_email": "bot@example.com",
            "flow_run_url": "http://prefect/runs/1",
        }
    )
    update = _update("shop/cart", "v1.1", "prod", app="cart")

    result = write_back(str(bare), [update], config)

    assert result.changed and result.attempts == 1
    assert git("rev-parse", "main", cwd=bare).strip() == result.commit
    assert "newTag: v1.1" in show(bare, "prod/kustomization.yaml")
    message = git("log", "-1", "--format=%an <%ae>|%B", cwd=bare)
    author, body = message.split("|", 1)
    assert author == "Bot <bot@example.com>"
    assert body.splitlines()[0] == "cart(prod): shop/cart 1.0 -> v1.1"
    assert "Source-Commit: abc1234" in body and "Flow-Run: http://prefect/runs/1" in body
    assert "Digest:" not in body  # empty trailers are dropped

    again = write_back(str(bare), [update], config)
    assert not again.changed and again.commit is None
    assert len(subjects(bare)) == 2


def test_batch_of_updates_is_one_commit(tmp_path: Path) -> None:
    bare = _shared_file_remote(tmp_path)
    updates = [_update("shop/cart", "v2", "prod", "cart"), _update("shop/web", "v3", "prod", "web")]
    result = write_back(str(bare), updates, FAST)
    assert len(result.changes) == 2
    assert subjects(bare)[0] == "shipyard: update 2 images"
    body = git("log", "-1", "--format=%B", cwd=bare)
    assert "* cart(prod): shop/cart 1.0 -> v2" in body and "* web(prod): shop/web 1.0 -> v3" in body


def test_stale_clone_refetches_and_reapplies(tmp_path: Path) -> None:
    """A concurrent change to another image in the same file is kept, not clobbered."""
    bare = _shared_file_remote(tmp_path)
    stale = clone(str(bare), tmp_path / "stale", FAST)
    write_back(str(bare), [_update("shop/web", "v9", "prod")], FAST)

    result = push_updates(stale, [_update("shop/cart", "v2", "prod")], FAST)

    assert result.attempts == 2
    text = show(bare, "prod/kustomization.yaml")
    assert "name: shop/web\n    newTag: v9" in text and "name: shop/cart\n    newTag: v2" in text
    assert fast_forward_only(bare)


def test_concurrent_change_of_the_same_image_is_a_conflict(tmp_path: Path) -> None:
    bare = _shared_file_remote(tmp_path)
    stale = clone(str(bare), tmp_path / "stale", FAST)
    write_back(str(bare), [_update("shop/cart", "v5", "prod")], FAST)
    with pytest.raises(PermanentError, match="conflict"):
        push_updates(stale, [_update("shop/cart", "v6", "prod")], FAST)
    assert "newTag: v5" in show(bare, "prod/kustomization.yaml")


def test_bounded_attempts_then_transient(tmp_path: Path) -> None:
    """A remote that moves during every push exhausts max_attempts; never a force push."""
    bare = _shared_file_remote(tmp_path)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(RACER_HOOK)
    hook.chmod(0o755)
    config = FAST.model_copy(update={"max_attempts": 3})
    with pytest.raises(TransientError, match="after 3 attempts"):
        write_back(str(bare), [_update("shop/cart", "v2", "prod")], config)
    assert subjects(bare)[:3] == ["racer", "racer", "racer"]
    assert fast_forward_only(bare)


# Another writer wins the race during each push: the hook moves the branch (a real,
# fast-forward commit) after receive-pack advertised it, so our ref update fails.
RACER_HOOK = """#!/bin/sh
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_AUTHOR_NAME=racer GIT_AUTHOR_EMAIL=r@x GIT_COMMITTER_NAME=racer GIT_COMMITTER_EMAIL=r@x
tip=$(git rev-parse refs/heads/main)
new=$(echo racer | git commit-tree "$tip^{tree}" -p "$tip")
git update-ref refs/heads/main "$new" "$tip"
exit 0
"""


def test_rejecting_hook_is_permanent(tmp_path: Path) -> None:
    bare = _shared_file_remote(tmp_path)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: use a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(PermanentError, match="protected branch"):
        write_back(str(bare), [_update("shop/cart", "v2", "prod")], FAST)


def test_missing_remote_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="clone"):
        write_back(str(tmp_path / "nope.git"), [_update("shop/cart", "v2")], FAST)


def test_sparse_clone_checks_out_only_the_edited_paths(tmp_path: Path) -> None:
    bare = make_remote(
        tmp_path,
        {
            "apps/a/prod/kustomization.yaml": kustomization(("shop/a", "1")),
            "apps/b/prod/kustomization.yaml": kustomization(("shop/b", "1")),
        },
    )
    config = FAST.model_copy(update={"sparse": True})
    repo = clone(str(bare), tmp_path / "sparse", config, paths=["apps/a/prod"])
    assert (tmp_path / "sparse/apps/a/prod/kustomization.yaml").exists()
    assert not (tmp_path / "sparse/apps/b").exists()
    push_updates(repo, [_update("shop/a", "v2", "apps/a/prod")], config)
    assert "newTag: v2" in show(bare, "apps/a/prod/kustomization.yaml")
    assert "newTag: 1" in show(bare, "apps/b/prod/kustomization.yaml")


def test_message_template_fields() -> None:
    config = GitWriteConfig(message_template="{app}:{environment}:{old}>{new}:{digest}")
    update = _update("shop/cart", "v2", app="cart")
    from tasks.set_image import Change

    text = render_message([(update, [Change("f", "shop/cart:1", "shop/cart:2")])], config)
    assert text == "cart:prod:shop/cart:1>shop/cart:2:\n"
    with pytest.raises(ValueError, match="unknown fields"):
        GitWriteConfig(message_template="{nope}")


@pytest.mark.slow
def test_twenty_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """20 writers, different apps, one branch: 20 commits, all changes, no force push."""
    n = 20
    bare = make_remote(
        tmp_path,
        {
            f"apps/app{i:02d}/prod/kustomization.yaml": kustomization((f"shop/app{i:02d}", "1.0"))
            for i in range(n)
        },
    )
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)
    # Bounded, but generous: the machine may be shared and slow.
    patient = FAST.model_copy(update={"max_attempts": 100, "backoff_max_seconds": 0.5})

    def writer(i: int) -> None:
        try:
            barrier.wait()
            update = _update(f"shop/app{i:02d}", "v2.0", f"apps/app{i:02d}/prod", f"app{i:02d}")
            results[i] = write_back(str(bare), [update], patient)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    log = subjects(bare)
    assert len(log) == n + 1  # seed + exactly one commit per writer
    assert len(set(log)) == len(log)
    for i in range(n):
        assert "newTag: v2.0" in show(bare, f"apps/app{i:02d}/prod/kustomization.yaml")
    assert fast_forward_only(bare)


def test_batcher_coalesces_concurrent_updates(tmp_path: Path) -> None:
    """Updates submitted together from threads land in fewer commits, none lost."""
    n = 8
    bare = make_remote(
        tmp_path,
        {f"apps/a{i}/kustomization.yaml": kustomization((f"shop/a{i}", "v1")) for i in range(n)},
    )
    batcher = WriteBatcher(partial(write_back, str(bare), config=FAST), window_seconds=0.2)
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            batcher.submit(_update(f"shop/a{i}", "v2", f"apps/a{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert batcher.commits < n and len(subjects(bare)) == 1 + batcher.commits
    for i in range(n):
        assert "newTag: v2" in show(bare, f"apps/a{i}/kustomization.yaml")


def test_batcher_isolates_a_bad_update(tmp_path: Path) -> None:
    bare = _shared_file_remote(tmp_path)
    batcher = WriteBatcher(partial(write_back, str(bare), config=FAST), window_seconds=0.2)
    outcome: dict[str, object] = {}

    def submit(image: str) -> None:
        try:
            outcome[image] = batcher.submit(_update(image, "v7", "prod"))
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome[image] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in ("shop/cart", "shop/nope")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(outcome["shop/nope"], ConfigError)
    assert "name: shop/cart\n    newTag: v7" in show(bare, "prod/kustomization.yaml")


@pytest.mark.parametrize(("threshold", "sparse"), [(1, True), (10, False)])
def test_sparse_is_automatic_for_large_repos(tmp_path: Path, threshold: int, sparse: bool) -> None:
    bare = make_remote(
        tmp_path,
        {
            "apps/a/prod/kustomization.yaml": kustomization(("shop/a", "v1")),
            "apps/b/prod/kustomization.yaml": kustomization(("shop/b", "v1")),
        },
    )
    config = FAST.model_copy(update={"sparse_threshold_files": threshold})
    assert config.sparse is None
    repo = clone(str(bare), tmp_path / "c", config, paths=["apps/a/prod/kustomization.yaml"])
    assert (tmp_path / "c/apps/a/prod/kustomization.yaml").exists()
    assert (tmp_path / "c/apps/b").exists() is not sparse
    push_updates(repo, [_update("shop/a", "v2", "apps/a/prod")], config)
    assert "newTag: v2" in show(bare, "apps/a/prod/kustomization.yaml")


def test_trailers_of_the_write_and_of_each_update_end_the_commit(tmp_path: Path) -> None:
    """GitWriteConfig.trailers and ImageUpdate.trailers become git trailers, once each,
    in the block of the template's own (Source-Commit:), also for a batch."""
    bare = _shared_file_remote(tmp_path)
    config = FAST.model_copy(update={"trailers": {"Change-Request": "CHG-7"}})
    approved = {"Approved-by": "ana", "Reason": "release\n2.1"}
    updates = [
        _update("shop/cart", "v2", "prod", "cart").with_trailers(approved),
        _update("shop/web", "v3", "prod", "web").with_trailers(approved),
    ]
    result = write_back(str(bare), updates, config)
    assert result.changed
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)", cwd=bare).strip().splitlines()
    assert trailers[-3:] == ["Change-Request: CHG-7", "Approved-by: ana", "Reason: release 2.1"]
    assert "Source-Commit: abc1234" in trailers


def test_single_update_message_keeps_one_trailer_block() -> None:
    update = _update("shop/cart", "v2", "prod", "cart").with_trailers({"Approved-by": "ana"})
    changes = [Change("prod/kustomization.yaml", "shop/cart:1.0", "shop/cart:v2")]
    message = render_message([(update, changes)], FAST)
    assert message == (
        "cart(prod): shop/cart 1.0 -> v2\n\nSource-Commit: abc1234\nApproved-by: ana\n"
    )


def test_invalid_trailer_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid commit trailer key"):
        _update("shop/cart", "v2").with_trailers({"Approved by": "ana"})
    with pytest.raises(ValidationError, match="invalid commit trailer key"):
        GitWriteConfig(trailers={"": "x"})
