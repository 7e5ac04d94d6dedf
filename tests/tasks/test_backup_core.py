"""Pure parts of backup and restore: normalization, manifest, checksums, retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.core.config import parse_config
from shipyard.core.errors import ConfigError
from shipyard.core.manifests import diff_objects, normalize, significant, skip_reason
from tasks.backup_export import BackupConfig
from tasks.backup_manifest import (
    backup_root,
    build_manifest,
    choose_backup,
    encode_object,
    entry_for,
    expired_backups,
    integrity_error,
    new_backup_id,
    object_path,
    parse_backup_time,
    verify_contents,
)
from tasks.restore_objects import drill_namespace, map_namespace, restore_rank

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def deployment_as_served() -> dict[str, Any]:
    """A Deployment the way an API server returns it: metadata, defaults, status."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "5f0c",
            "resourceVersion": "812",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"app": "web"},
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "team": "shop",
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "shop/web:1.2",
                            "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "resources": {},
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        }
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
        "status": {"availableReplicas": 2},
    }


def test_normalize_drops_server_state_and_defaults() -> None:
    out = normalize(deployment_as_served())
    assert out == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": {"team": "shop"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "shop/web:1.2", "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
        },
    }
    assert normalize(out) == out


def test_normalize_keeps_non_default_values() -> None:
    obj = deployment_as_served()
    obj["spec"]["revisionHistoryLimit"] = 3
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    out = normalize(obj)
    assert out["spec"]["revisionHistoryLimit"] == 3
    assert out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_normalize_service_drops_allocated_ips() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "1"},
        "spec": {
            "clusterIP": "10.0.0.7",
            "clusterIPs": ["10.0.0.7"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "type": "NodePort",
            "sessionAffinity": "None",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "web"},
        },
    }
    assert normalize(svc)["spec"] == {
        "type": "NodePort",
        "ports": [{"port": 80, "targetPort": 8080}],
        "selector": {"app": "web"},
    }


@pytest.mark.parametrize(
    ("obj", "skipped"),
    [
        ({"kind": "Event", "metadata": {"name": "e"}}, True),
        ({"kind": "Endpoints", "metadata": {"name": "web"}}, True),
        ({"kind": "ServiceAccount", "metadata": {"name": "default"}}, True),
        ({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}}, True),
        (
            {
                "kind": "Pod",
                "metadata": {
                    "name": "web-1",
                    "ownerReferences": [
                        {"kind": "ReplicaSet", "name": "web-x", "controller": True}
                    ],
                },
            },
            True,
        ),
        (
            {
                "kind": "ReplicaSet",
                "metadata": {
                    "name": "web-x",
                    "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
                },
            },
            True,
        ),
        ({"kind": "Pod", "metadata": {"name": "standalone"}}, False),
        ({"kind": "ConfigMap", "metadata": {"name": "settings"}}, False),
        ({"kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {}}, True),
    ],
)
def test_skip_reason(obj: dict[str, Any], skipped: bool) -> None:
    assert (skip_reason(obj) is not None) is skipped


def test_drill_namespace_is_a_valid_label() -> None:
    assert drill_namespace("shop", "a1b2c3") == "shop-drill-a1b2c3"
    long = drill_namespace("x" * 60, "a1b2c3")
    assert len(long) <= 63 and long.endswith("-drill-a1b2c3")
    assert drill_namespace("x" * 60, "a1b2c3") != drill_namespace("x" * 59 + "y", "a1b2c3")


def test_map_namespace_rewrites_namespace_and_subjects() -> None:
    rb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "r", "namespace": "shop"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        ],
    }
    out = map_namespace(rb, {"shop": "shop-drill-1"})
    assert out["metadata"]["namespace"] == "shop-drill-1"
    assert [s["namespace"] for s in out["subjects"]] == ["shop-drill-1", "tools"]
    assert rb["metadata"]["namespace"] == "shop"  # input untouched
    ns = map_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        {"shop": "shop-drill-1"},
    )
    assert ns["metadata"]["name"] == "shop-drill-1"


def test_restore_order() -> None:
    order = [
        "Service",
        "Deployment",
        "Secret",
        "RoleBinding",
        "Namespace",
        "CustomResourceDefinition",
        "Ingress",
        "Application",
    ]
    ranked = sorted(order, key=restore_rank)
    assert ranked[:3] == ["CustomResourceDefinition", "Namespace", "RoleBinding"]
    assert ranked.index("Secret") < ranked.index("Deployment") < ranked.index("Service")
    assert ranked[-1] == "Ingress"


def test_diff_objects_reports_paths_and_tolerates_spec_defaults() -> None:
    expected = {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "x": "1"}}
    actual = {
        "kind": "ConfigMap",
        "metadata": {"name": "a", "labels": {"l": "1"}},
        "data": {"k": "w"},
    }
    rendered = sorted(d.render(secret=False) for d in significant(diff_objects(expected, actual)))
    assert rendered == [
        ".data.k: changed 'v' -> 'w'",
        ".data.x: missing",
        ".metadata.labels: unexpected None -> {'l': '1'}",
    ]
    spec_default = diff_objects({"spec": {"a": 1}}, {"spec": {"a": 1, "defaulted": True}})
    assert spec_default and not significant(spec_default)


def test_secret_diff_never_shows_values() -> None:
    diffs = diff_objects({"data": {"password": "c2VjcmV0"}}, {"data": {"password": "b3RoZXI="}})
    line = diffs[0].render(secret=True)
    assert "c2VjcmV0" not in line and "b3RoZXI=" not in line
    assert line == ".data.password: changed"


def test_backup_ids_sort_by_time() -> None:
    rng = random.Random(1)
    a = new_backup_id(NOW, rng)
    b = new_backup_id(NOW + timedelta(seconds=1), rng)
    assert a < b
    assert parse_backup_time(a) == NOW
    assert parse_backup_time("not-an-id") is None
    assert backup_root("backups/", "prod", a) == f"backups/prod/{a}/"
    assert backup_root("", "prod") == "prod/"


def _manifest() -> Any:
    objs = [
        normalize(deployment_as_served()),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "shop"},
            "data": {"k": "dg=="},
        },
    ]
    entries = [entry_for(o, encode_object(o)) for o in objs]
    contents = {e.path: encode_object(o) for e, o in zip(entries, objs, strict=True)}
    manifest = build_manifest(
        backup_id=new_backup_id(NOW),
        cluster="prod",
        created_at=NOW,
        entries=entries,
        namespaces=["shop"],
        cluster_version="v1.32.0",
        gitops_revision="abc123",
    )
    return manifest, contents


def test_manifest_counts_and_paths() -> None:
    manifest, contents = _manifest()
    assert manifest.counts == {"Deployment": 1, "Secret": 1}
    assert manifest.total_bytes == sum(len(v) for v in contents.values())
    assert [e.secret for e in manifest.objects] == [False, True]
    assert manifest.objects[0].path == "objects/shop/apps/Deployment/web.json"
    assert (
        object_path({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        == "_cluster/core/Namespace/shop.json"
    )
    again = type(manifest).model_validate_json(manifest.model_dump_json())
    assert again == manifest


def test_verify_contents_names_tampered_and_missing_objects() -> None:
    manifest, contents = _manifest()
    assert verify_contents(manifest, contents) == []
    deploy, secret = (e.path for e in manifest.objects)
    tampered = dict(contents)
    tampered[deploy] = tampered[deploy].replace(b"1.2", b"6.6")
    del tampered[secret]
    problems = verify_contents(manifest, tampered)
    assert [(p.path, p.problem) for p in problems] == [
        (deploy, "checksum mismatch"),
        (secret, "missing"),
    ]
    err = integrity_error(manifest.backup_id, problems)
    assert deploy in str(err) and secret in str(err)


def _ids(ages_days: list[float]) -> list[str]:
    return [
        new_backup_id(NOW - timedelta(days=d), random.Random(i)) for i, d in enumerate(ages_days)
    ]


def test_retention_keep_last() -> None:
    ids = _ids([0, 1, 2, 3, 4])
    assert expired_backups(ids, NOW, keep_last=2) == sorted(ids[2:])


def test_retention_max_age_and_combined() -> None:
    ids = _ids([0, 1, 10, 20])
    assert expired_backups(ids, NOW, max_age=timedelta(days=7)) == sorted(ids[2:])
    # both rules: delete only what is beyond keep_last AND too old
    assert expired_backups(ids, NOW, keep_last=3, max_age=timedelta(days=7)) == [ids[3]]
    # the newest is never deleted, even if everything is old
    old = _ids([30, 40])
    assert expired_backups(old, NOW, max_age=timedelta(days=7)) == [old[1]]
    assert expired_backups(ids, NOW) == []


def test_choose_backup() -> None:
    ids = _ids([0, 3, 10])
    assert choose_backup(ids, "latest") == ids[0]
    assert choose_backup(ids, ids[2]) == ids[2]
    picked = choose_backup(ids, "random", now=NOW, window=timedelta(days=5), rng=random.Random(3))
    assert picked in ids[:2]
    with pytest.raises(ConfigError, match="unknown backup id"):
        choose_backup(ids, "20990101T000000Z-000000")
    with pytest.raises(ConfigError, match="no complete backups"):
        choose_backup([], "latest")


def test_backup_config_validation() -> None:
    cfg = parse_config(BackupConfig, {"namespaces": ["b", "a", "a", " "]})
    assert cfg.namespaces == ["a", "b"]
    with pytest.raises(ConfigError, match="namespaces"):
        parse_config(BackupConfig, {"namespaces": ["Bad_Name"]})
    with pytest.raises(ConfigError, match="keep_last"):
        parse_config(BackupConfig, {"namespaces": ["a"], "keep_last": 0})


def test_secret_values_are_registered_for_redaction() -> None:
    from shipyard.core.manifests import register_secret_values
    from shipyard.core.redact import redact

    secret = {
        "kind": "Secret",
        "data": {"password": "aHVudGVyMi1zdXBlci1zZWNyZXQ="},  # hunter2-super-secret
        "stringData": {"token": "plain-token-value"},
    }
    register_secret_values(secret)
    line = "connect with hunter2-super-secret / aHVudGVyMi1zdXBlci1zZWNyZXQ= / plain-token-value"
    assert redact(line) == "connect with ******** / ******** / ********"
