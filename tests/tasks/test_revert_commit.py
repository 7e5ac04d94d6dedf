"""revert_commit: a new revert commit on the tip, pushed without force, idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.errors import PermanentError
from tasks.revert_commit import RevertConfig, revert_commit
from tests.tasks.gitops_repo import fast_forward_only
from tests.tasks.k8s_objects import GitOpsRepo


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    repo = GitOpsRepo(tmp_path)
    repo.commit({"a.txt": "1\n", "b.txt": "x\n"}, "seed")
    return repo


def test_revert_makes_a_new_commit_on_the_tip(gitops: GitOpsRepo) -> None:
    bad = gitops.commit({"a.txt": "2\n"}, "web: 1 -> 2")
    later = gitops.commit({"b.txt": "y\n"}, "unrelated")
    result = revert_commit(gitops.url, RevertConfig(commit=bad, reason="CrashLoopBackOff: boom"))
    assert result.reverted == bad and result.attempts == 1 and not result.already_reverted
    assert gitops.subjects()[:3] == ['Revert "web: 1 -> 2"', "unrelated", "web: 1 -> 2"]
    assert gitops.tip() == result.revert_commit
    body = subprocess.run(
        ["git", "log", "-1", "--format=%B", "main"], cwd=gitops.bare, capture_output=True, text=True
    ).stdout
    assert f"This reverts commit {bad}." in body and "Reason: CrashLoopBackOff: boom" in body
    assert later != result.revert_commit
    assert fast_forward_only(gitops.bare)
    again = revert_commit(gitops.url, RevertConfig(commit=bad))
    assert again.already_reverted and again.revert_commit == result.revert_commit
    assert len(gitops.subjects()) == 4


def test_a_push_race_is_rebased_not_forced(
    gitops: GitOpsRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = gitops.commit({"a.txt": "2\n"}, "bad")
    other = GitOpsRepo.__new__(GitOpsRepo)
    other.bare, other.work = gitops.bare, gitops.work
    pushed: list[str] = []

    def sleep_and_race(_: float) -> None:
        pass

    # another writer pushes between our revert and our push
    import tasks.revert_commit as mod

    original = mod._make_revert

    def make_then_race(repo, sha, config):  # type: ignore[no-untyped-def]
        out = original(repo, sha, config)
        if not pushed:
            pushed.append(other.commit({"b.txt": "z\n"}, "concurrent"))
        return out

    monkeypatch.setattr(mod, "_make_revert", make_then_race)
    result = revert_commit(gitops.url, RevertConfig(commit=bad), sleep=sleep_and_race)
    assert result.attempts == 2
    assert gitops.subjects()[:2] == ['Revert "bad"', "concurrent"]
    assert fast_forward_only(gitops.bare)


def test_conflicting_revert_is_permanent(gitops: GitOpsRepo) -> None:
    bad = gitops.commit({"a.txt": "2\n"}, "bad")
    gitops.commit({"a.txt": "3\n"}, "later edit of the same line")
    with pytest.raises(PermanentError, match="conflicts"):
        revert_commit(gitops.url, RevertConfig(commit=bad))


def test_unknown_commit_is_permanent(gitops: GitOpsRepo) -> None:
    with pytest.raises(PermanentError, match="not on branch"):
        revert_commit(gitops.url, RevertConfig(commit="0" * 40))
