"""What an environment pins, read from a real git remote (a bare repo over file://)."""

from __future__ import annotations

from pathlib import Path

from shipyard.core.git import CloneConfig
from tasks.read_pinned import read_pinned_at
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env

IMAGE = "registry.example.com/shop/web"
DIGEST = "sha256:" + "5f3a2c" + "0" * 58
OTHER = "sha256:" + "1" * 64


def _pinned(repo: GitOpsRepo) -> tuple[str | None, str, int]:
    found = read_pinned_at(repo.url, CloneConfig(branch="main"), "envs/dev", IMAGE)
    return found.digest, found.commit, found.unpinned


def test_a_tag_only_environment_pins_no_digest(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path)
    sha = repo.commit(kustomize_env(IMAGE, "1"), "web: 1")
    digest, commit, unpinned = _pinned(repo)
    assert (digest, commit) == (None, sha) and unpinned >= 1


def test_the_images_entry_digest_is_what_runs(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path)
    files = kustomize_env(IMAGE, "1")
    files["envs/dev/kustomization.yaml"] = str(files["envs/dev/kustomization.yaml"]) + (
        f"    digest: {DIGEST}\n"
    )
    sha = repo.commit(files, "web: 1 pinned")
    assert _pinned(repo)[:2] == (DIGEST, sha)  # a plain tag in the base does not count


def test_two_digests_are_not_one(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path)
    files = kustomize_env(IMAGE, "1")
    files["envs/dev/kustomization.yaml"] = str(files["envs/dev/kustomization.yaml"]) + (
        f"    digest: {DIGEST}\n"
    )
    files["envs/dev/job.yaml"] = (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n"
        "    spec:\n      restartPolicy: Never\n      containers:\n"
        f"        - name: m\n          image: {IMAGE}@{OTHER}\n"
    )
    repo.commit(files, "web: two digests")
    assert _pinned(repo)[0] is None
