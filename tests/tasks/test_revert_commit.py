"""revert_commit: a new revert commit on the tip, pushed without force, idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.core.errors import PermanentError
from tasks.revert_commit import NO_REASON, RevertConfig, revert_commit
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


RACE_HOOK = """#!/bin/sh
# Another writer wins the race, once: while our push waits in pre-receive, a second
# clone pushes a commit to the same branch, so our ref update then finds a new tip.
[ -e "$GIT_DIR/raced" ] && exit 0
touch "$GIT_DIR/raced"
bare="$(cd "$GIT_DIR" && pwd)"
unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
work="$(mktemp -d)"
git clone -q "$bare" "$work/w" && cd "$work/w" &&
  echo z > b.txt && git add b.txt &&
  git -c user.name=other -c user.email=other@example.com commit -qm concurrent &&
  git push -q origin HEAD:main
status=$?
rm -rf "$work"
exit $status
"""


def test_a_push_race_is_rebased_not_forced(gitops: GitOpsRepo) -> None:
    bad = gitops.commit({"a.txt": "2\n"}, "bad")
    hook = Path(gitops.bare) / "hooks" / "pre-receive"
    hook.write_text(RACE_HOOK)
    hook.chmod(0o755)
    result = revert_commit(gitops.url, RevertConfig(commit=bad), sleep=lambda _s: None)
    hook.unlink()
    assert result.attempts == 2
    assert gitops.subjects()[:3] == ['Revert "bad"', "concurrent", "bad"]
    assert fast_forward_only(gitops.bare)


def test_conflicting_revert_is_permanent(gitops: GitOpsRepo) -> None:
    bad = gitops.commit({"a.txt": "2\n"}, "bad")
    gitops.commit({"a.txt": "3\n"}, "later edit of the same line")
    with pytest.raises(PermanentError, match="conflicts"):
        revert_commit(gitops.url, RevertConfig(commit=bad))


def test_unknown_commit_is_permanent(gitops: GitOpsRepo) -> None:
    with pytest.raises(PermanentError, match="not on branch"):
        revert_commit(gitops.url, RevertConfig(commit="0" * 40))


def _parsed_trailers(gitops: GitOpsRepo) -> list[str]:
    """What ``git interpret-trailers --parse`` reads from the tip's message."""
    message = subprocess.run(
        ["git", "log", "-1", "--format=%B", "main"], cwd=gitops.bare, capture_output=True, text=True
    ).stdout
    return subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


def test_every_revert_carries_a_reason_trailer(gitops: GitOpsRepo) -> None:
    """docs/sync-verify.md promises a Reason: trailer: also when a caller's failure rolled
    the delivery back and nobody recorded why, and as one line when the reason has many."""
    bad = gitops.commit({"a.txt": "2\n"}, "web: 1 -> 2")
    revert_commit(gitops.url, RevertConfig(commit=bad))
    assert _parsed_trailers(gitops) == [f"Reason: {NO_REASON}"]

    worse = gitops.commit({"b.txt": "z\n"}, "web: 2 -> 3")
    reason = "rollout of web timed out\n\npods: CrashLoopBackOff\nSigned-off-by: nobody"
    revert_commit(gitops.url, RevertConfig(commit=worse, reason=reason))
    assert _parsed_trailers(gitops) == [
        "Reason: rollout of web timed out pods: CrashLoopBackOff Signed-off-by: nobody"
    ]
