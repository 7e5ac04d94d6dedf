"""`shipyard stack up --clusters N`: N labelled simulated clusters, each its own process
with its own kubeconfig, a fleet file over them, listed by `status`, stopped by `down`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipyard.core.errors import TransientError
from shipyard.stack import StackLayout, stack_up
from shipyard.stack.clusters import cluster_env, clusters_up
from shipyard.stack.runner import read_env_file
from tasks.fleet.config import assign_waves, load_fleet
from tests.fixtures.services import Stack
from tests.tasks.fleet_env import FleetRepo
from tests.tasks.k8s_objects import deployment

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def gone(pid: int) -> bool:
    path = Path(f"/proc/{pid}/stat")
    return not path.exists() or path.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHIPYARD_STATE_DIR"}
    return subprocess.run([*SHIPYARD, *args], capture_output=True, text=True, check=False, env=env)


def test_clusters_up_status_shrink_and_down(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path / "st")
    statuses = clusters_up(layout, 3)
    assert [s.name for s in statuses] == ["cluster-eu-1", "cluster-us-1", "cluster-ap-1"]
    assert all(s.healthy and s.pid for s in statuses), statuses
    assert len({s.address for s in statuses}) == 3
    pids = {s.name: s.pid for s in statuses}

    fleet_file = layout.root / "fleet.yaml"
    assert cluster_env(layout) == {"SHIPYARD_FLEET": str(fleet_file)}
    fleet = yaml.safe_load(fleet_file.read_text())
    assert [(c["name"], c["labels"]) for c in fleet["clusters"]] == [
        ("eu-1", {"region": "eu", "tier": "canary"}),
        ("us-1", {"region": "us", "tier": "main"}),
        ("ap-1", {"region": "ap", "tier": "main"}),
    ]
    # A fleet file `shipyard fleet rollout` takes: the canary first, then the rest.
    waves = assign_waves(load_fleet(fleet_file))
    assert [[c.name for c in wave] for wave in waves] == [["eu-1"], ["us-1", "ap-1"]]

    # Each kubeconfig reaches its own cluster: a namespace made in one is absent elsewhere.
    kubeconfigs = {c["name"]: c["kubeconfig"] for c in fleet["clusters"]}
    assert all(Path(k).is_file() for k in kubeconfigs.values())
    kubectl(kubeconfigs["eu-1"], "create", "namespace", "only-in-eu")
    assert "only-in-eu" in kubectl(kubeconfigs["eu-1"], "get", "ns", "-o", "name").stdout
    assert "only-in-eu" not in kubectl(kubeconfigs["us-1"], "get", "ns", "-o", "name").stdout

    # up again (no count: as recorded) leaves the running clusters alone.
    again = clusters_up(layout)
    assert {s.name: s.pid for s in again} == pids

    status = shipyard("stack", "status", "--state-dir", str(layout.root), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["healthy"] is True
    listed = {s["name"]: s for s in report["services"]}
    assert set(listed) == set(pids)
    assert listed["cluster-eu-1"]["note"].startswith("region=eu,tier=canary kubeconfig=")

    # Fewer clusters: the extra ones are stopped and leave the fleet file.
    shrunk = clusters_up(layout, 1)
    assert [s.pid for s in shrunk] == [pids["cluster-eu-1"]]
    assert gone(pids["cluster-us-1"]) and gone(pids["cluster-ap-1"])
    fleet = yaml.safe_load(fleet_file.read_text())
    assert [c["name"] for c in fleet["clusters"]] == ["eu-1"]
    assert [w["name"] for w in fleet["rollout"]["waves"]] == ["canary"]

    down = shipyard("stack", "down", "--state-dir", str(layout.root))
    assert down.returncode == 0, down.stderr
    assert "cluster-eu-1" in down.stdout
    assert gone(pids["cluster-eu-1"])
    status = shipyard("stack", "status", "--state-dir", str(layout.root), "--json")
    assert status.returncode == 1
    assert [s["running"] for s in json.loads(status.stdout)["services"]] == [False]


def test_a_cluster_that_cannot_start_is_one_error_and_nothing_is_left(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path / "st")
    layout.root.mkdir(parents=True)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
        free.close()
        (layout.root / "clusters.json").write_text(
            json.dumps(
                [
                    {"name": "eu-1", "labels": {"tier": "canary"}, "port": free_port},
                    {"name": "us-1", "labels": {}, "port": taken},
                ]
            )
        )
        with pytest.raises(TransientError, match="cluster us-1 exited during start"):
            clusters_up(layout)
    assert not any(not gone(int(p.read_text())) for p in layout.root.glob("run/cluster-*.pid")), (
        "a cluster was left running"
    )


@pytest.mark.slow
def test_stack_up_clusters_cli_adds_a_fleet_to_the_stack(stack: Stack) -> None:
    root = str(stack.layout.root)
    try:
        up = shipyard("stack", "up", "--state-dir", root, "--clusters", "2", "--json")
        assert up.returncode == 0, up.stderr
        report = json.loads(up.stdout)
        assert report["healthy"] is True
        names = [s["name"] for s in report["services"]]
        assert names[-2:] == ["cluster-eu-1", "cluster-us-1"]
        assert {"prefect", "registry", "s3"} <= set(names)
        env = read_env_file(stack.layout)
        fleet = yaml.safe_load(Path(env["SHIPYARD_FLEET"]).read_text())
        assert [c["name"] for c in fleet["clusters"]] == ["eu-1", "us-1"]
        assert env["KUBECONFIG"] not in {c["kubeconfig"] for c in fleet["clusters"]}
        status = shipyard("stack", "status", "--state-dir", root, "--json")
        assert status.returncode == 0, status.stderr
        assert {"cluster-eu-1", "cluster-us-1"} <= {
            s["name"] for s in json.loads(status.stdout)["services"]
        }
    finally:
        stack_up(stack.layout, clusters=0)
    assert "SHIPYARD_FLEET" not in read_env_file(stack.layout)
    assert not (stack.layout.root / "fleet.yaml").exists()


def test_fleet_rollout_takes_the_stacks_fleet_file(tmp_path: Path) -> None:
    """The fleet file `stack up --clusters` writes is one `shipyard fleet rollout` runs."""
    layout = StackLayout(tmp_path / "st")
    try:
        clusters_up(layout, 2)
        fleet_file = layout.root / "fleet.yaml"
        fleet = yaml.safe_load(fleet_file.read_text())
        for cluster in fleet["clusters"]:
            kubectl(cluster["kubeconfig"], "create", "namespace", fleet["rollout"]["namespace"])
        repo = FleetRepo(tmp_path / "gitops")
        target = repo.root / fleet["rollout"]["path"] / "deployment.yaml"
        target.parent.mkdir(parents=True)
        # No registry host: an image the simulator runs without a pull.
        target.write_text(json.dumps(deployment("cart", None, "shop/cart:1", replicas=2)))
        sha = repo.commit({}, "cart 1")
        args = ["--fleet", str(fleet_file), "--repo-dir", str(repo.root), "--revision", sha]
        result = subprocess.run(
            [*SHIPYARD, "fleet", "rollout", *args, "--json"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "SHIPYARD_STATE_DIR": str(layout.root), "PREFECT_API_URL": ""},
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["passed"] is True
        assert [
            (w["name"], [(c["name"], c["status"]) for c in w["clusters"]]) for w in report["waves"]
        ] == [("canary", [("eu-1", "healthy")]), ("rest", [("us-1", "healthy")])]
        for cluster in fleet["clusters"]:
            got = kubectl(
                cluster["kubeconfig"], "get", "-n", "shop-prod", "deployment/cart", "-o", "json"
            )
            assert json.loads(got.stdout)["status"]["readyReplicas"] == 2
    finally:
        shipyard("stack", "down", "--state-dir", str(layout.root))
