"""The fleet file, label selectors as Kubernetes matches them, the wave assignment, and
every bad input of `shipyard fleet rollout` (exit 2, one line, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipyard.cli.main import main
from shipyard.core.errors import ConfigError
from tasks.fleet.config import (
    Fleet,
    LabelSelector,
    Requirement,
    assign_waves,
    plan_rollout,
    selector_matches,
)
from tests.tasks.fleet_env import FleetRepo


def sel(**kw: object) -> LabelSelector:
    return LabelSelector.model_validate(kw)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {}, True),
        (sel(), {"a": "1"}, True),
        (sel(matchLabels={"tier": "canary"}), {"tier": "canary", "x": "y"}, True),
        (sel(matchLabels={"tier": "canary"}), {"tier": "main"}, False),
        (sel(matchLabels={"tier": "canary"}), {}, False),
        (
            sel(matchExpressions=[{"key": "r", "operator": "In", "values": ["eu", "us"]}]),
            {"r": "us"},
            True,
        ),
        (sel(matchExpressions=[{"key": "r", "operator": "In", "values": ["eu"]}]), {}, False),
        (sel(matchExpressions=[{"key": "r", "operator": "NotIn", "values": ["eu"]}]), {}, True),
        (
            sel(matchExpressions=[{"key": "r", "operator": "NotIn", "values": ["eu"]}]),
            {"r": "eu"},
            False,
        ),
        (sel(matchExpressions=[{"key": "t", "operator": "Exists"}]), {"t": ""}, True),
        (sel(matchExpressions=[{"key": "t", "operator": "Exists"}]), {}, False),
        (sel(matchExpressions=[{"key": "t", "operator": "DoesNotExist"}]), {}, True),
        (sel(matchExpressions=[{"key": "t", "operator": "DoesNotExist"}]), {"t": "x"}, False),
        (
            sel(
                matchLabels={"r": "eu"},
                matchExpressions=[{"key": "t", "operator": "DoesNotExist"}],
            ),
            {"r": "eu", "t": "canary"},
            False,
        ),
    ],
)
def test_selector_matches_as_kubernetes(
    selector: LabelSelector | None, labels: dict[str, str], expected: bool
) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "a", "operator": "In"},
        {"key": "a", "operator": "NotIn", "values": []},
        {"key": "a", "operator": "Exists", "values": ["x"]},
        {"key": "a", "operator": "Gt", "values": ["1"]},
    ],
)
def test_requirements_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Requirement.model_validate(bad)


def doc(
    tmp: Path, waves: list[dict[str, object]] | None = None, **extra: object
) -> dict[str, object]:
    kc = tmp / "kc"
    kc.write_text("apiVersion: v1\nkind: Config\n")
    clusters = [
        {"name": "c1", "kubeconfig": str(kc), "labels": {"tier": "canary", "region": "eu"}},
        {"name": "e1", "kubeconfig": str(kc), "labels": {"region": "eu"}},
        {"name": "u1", "kubeconfig": "kc", "labels": {"region": "us"}},  # relative to the file
    ]
    return {
        "apiVersion": "shipyard.dev/v1",
        "kind": "Fleet",
        "metadata": {"name": "shop-prod"},
        "clusters": clusters,
        "rollout": {
            "path": "envs/prod/api",
            "namespace": "shop",
            "verify": {"workloads": ["deployment/api"], "timeout_seconds": 5},
            "waves": waves
            or [
                {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
                {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}},
                {"name": "rest"},
            ],
        },
        **extra,
    }


def test_first_matching_wave_wins(tmp_path: Path) -> None:
    fleet = Fleet.model_validate(doc(tmp_path))
    assert [[c.name for c in w] for w in assign_waves(fleet)] == [["c1"], ["e1"], ["u1"]]
    assert fleet.rollback == "wave"


def test_plan_resolves_revision_kubeconfigs_and_waves(tmp_path: Path) -> None:
    repo = FleetRepo(tmp_path / "repo")
    (repo.root / "envs/prod/api").mkdir(parents=True)
    (repo.root / "envs/prod/api/d.yaml").write_text("kind: ConfigMap\n")
    sha = repo.commit({}, "one")
    file = tmp_path / "fleet.yaml"
    file.write_text(yaml.safe_dump(doc(tmp_path, rollback="all")))
    plan = plan_rollout(file, str(repo.root), "main")
    assert plan.sha == sha and plan.fleet.rollback == "all"
    assert [w.clusters for w in plan.waves] == [["c1"], ["e1"], ["u1"]]
    assert plan.cluster("u1").kubeconfig == str(tmp_path / "kc")
    assert plan.app_for("c1") == "api" and plan.record_name == "shipyard-fleet-shop-prod"


def _bad_cases(tmp: Path) -> dict[str, tuple[object, str]]:
    d = doc(tmp)
    rollout = d["rollout"]
    assert isinstance(rollout, dict)
    return {
        "missing file": (None, "does not exist"),
        "not yaml": ("kind: [unclosed\n", "not valid YAML"),
        "wrong kind": ({**d, "kind": "Fleat"}, "kind"),
        "wrong api version": ({**d, "apiVersion": "v1"}, "apiVersion"),
        "unknown field": ({**d, "extra": 1}, "extra"),
        "no workloads": (
            {**d, "rollout": {**rollout, "verify": {"workloads": []}}},
            "verify.workloads",
        ),
        "bad on_unreachable": (
            doc(tmp, [{"name": "all", "on_unreachable": "ignore"}]),
            "on_unreachable",
        ),
        "bad rollback": ({**d, "rollback": "none"}, "rollback"),
        "duplicate wave": (doc(tmp, [{"name": "a"}, {"name": "a"}]), "unique"),
        "wave matches no cluster": (
            doc(tmp, [{"name": "x", "selector": {"matchLabels": {"tier": "nope"}}}, {"name": "r"}]),
            "wave 'x': its selector matches no cluster",
        ),
        "wave left empty": (
            doc(
                tmp,
                [{"name": "all"}, {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}}],
            ),
            "wave 'eu' matches no cluster",
        ),
        "cluster in no wave": (
            doc(tmp, [{"name": "eu", "selector": {"matchLabels": {"region": "eu"}}}]),
            "in no wave: u1",
        ),
        "kubeconfig not a file": (
            {**d, "clusters": [*d["clusters"][:2], {"name": "u1", "kubeconfig": str(tmp)}]},  # type: ignore[index]
            "kubeconfig",
        ),
        "path missing at revision": (
            {**d, "rollout": {**rollout, "path": "envs/{cluster}/api"}},
            "does not exist at",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "not yaml",
        "wrong kind",
        "wrong api version",
        "unknown field",
        "no workloads",
        "bad on_unreachable",
        "bad rollback",
        "duplicate wave",
        "wave matches no cluster",
        "wave left empty",
        "cluster in no wave",
        "kubeconfig not a file",
        "path missing at revision",
        "unknown revision",
        "repo not git",
        "no revision",
    ],
)
def test_bad_input_exits_2_with_one_line(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "no-stack"))
    repo = FleetRepo(tmp_path / "repo")
    (repo.root / "envs/prod/api").mkdir(parents=True)
    (repo.root / "envs/prod/api/d.yaml").write_text("kind: ConfigMap\n")
    repo.commit({}, "one")
    file = tmp_path / "fleet.yaml"
    content, expected = _bad_cases(tmp_path).get(case, (doc(tmp_path), ""))
    if isinstance(content, str):
        file.write_text(content)
    elif content is not None:
        file.write_text(yaml.safe_dump(content))
    repo_dir, revision = str(repo.root), "main"
    if case == "unknown revision":
        revision, expected = "v9.9.9", "revision 'v9.9.9' does not exist"
    elif case == "repo not git":
        repo_dir, expected = str(tmp_path), "is not a git repository"
    elif case == "no revision":
        revision, expected = " ", "--revision is required"
    args = ["fleet", "rollout", "--fleet", str(file), "--repo-dir", repo_dir]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--revision", revision, "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shipyard: "), captured.err
    assert expected in lines[0]
    if case in ("wave matches no cluster", "cluster in no wave", "kubeconfig not a file"):
        with pytest.raises(ConfigError):
            plan_rollout(file, repo_dir, revision)
