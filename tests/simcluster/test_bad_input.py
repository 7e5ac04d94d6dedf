"""Malformed requests get the Status a real API server sends (4xx), never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.simcluster import SimClusterHandle

CM = "/api/v1/namespaces/{ns}/configmaps"
DEP = "/apis/apps/v1/namespaces/{ns}/deployments"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TEMPLATE = (
    '"template": {"metadata": {"labels": {"a": "b"}}, '
    '"spec": {"containers": [{"name": "c", "image": "i"}]}}'
)
JSON_CT = "application/json"

CASES = [
    ("POST", CM, "[1,2]", JSON_CT, 400),
    ("POST", CM, '{"metadata": "str"}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "y", "labels": {"a": 1}}}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "y", "ownerReferences": "x"}}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "y", "ownerReferences": [1]}}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "y", "finalizers": "x"}}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "y"}, "data": {"a": 1}}', JSON_CT, 400),
    ("POST", CM, '{"metadata": {"name": "Bad_Name"}}', JSON_CT, 422),
    ("POST", DEP, '{"metadata": {"name": "d"}, "spec": "x"}', JSON_CT, 400),
    (
        "POST",
        DEP,
        '{"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, '
        '"template": {"spec": {"containers": "x"}}}}',
        JSON_CT,
        400,
    ),
    (
        "POST",
        DEP,
        '{"metadata": {"name": "d"}, "spec": {"selector": "x", "template": 5}}',
        JSON_CT,
        400,
    ),
    (
        "POST",
        DEP,
        '{"metadata": {"name": "d"}, "spec": {"strategy": "x", '
        '"selector": {"matchLabels": {"a": "b"}}, ' + TEMPLATE + "}}",
        JSON_CT,
        400,
    ),
    (
        "POST",
        DEP,
        '{"metadata": {"name": "d"}, "spec": {"replicas": -1, '
        '"selector": {"matchLabels": {"a": "b"}}, ' + TEMPLATE + "}}",
        JSON_CT,
        422,
    ),
    (
        "POST",
        DEP,
        '{"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"x": "y"}}, '
        + TEMPLATE
        + "}}",
        JSON_CT,
        422,
    ),
    (
        "PATCH",
        CM + "/x",
        '[{"op": "replace", "path": "/nope/x", "value": 1}]',
        "application/json-patch+json",
        422,
    ),
    ("PATCH", CM + "/x", '[{"op": "bogus"}]', "application/json-patch+json", 422),
    ("PATCH", CM + "/x", '{"metadata": {"name": "other"}}', "application/merge-patch+json", 400),
    ("PATCH", CM + "/x", '"str"', "application/merge-patch+json", 400),
    (
        "PATCH",
        CM + "/x",
        '{"metadata": {"ownerReferences": {"a": 1}}}',
        "application/merge-patch+json",
        400,
    ),
    ("PATCH", CM + "/x?fieldManager=m", "- a\n- b", "application/apply-patch+yaml", 400),
    ("PATCH", CM + "/x?fieldManager=m", ": : :", "application/apply-patch+yaml", 400),
    ("PATCH", CM + "/x", "{}", "application/apply-patch+yaml", 400),
    ("PATCH", CM + "/x", "{}", "text/plain", 415),
    ("PUT", CM + "/x", '{"metadata": {"name": "z"}}', JSON_CT, 400),
    ("PUT", CM + "/x", '{"metadata": {"name": "x", "resourceVersion": "abc"}}', JSON_CT, 409),
    ("PUT", CM, "{}", JSON_CT, 405),
    ("GET", CM + "?continue=garbage", "", "", 400),
    ("GET", CM + "?limit=abc", "", "", 400),
    ("GET", CM + "?watch=1&resourceVersion=abc", "", "", 400),
    ("GET", CM + "?watch=1&timeoutSeconds=abc", "", "", 400),
    ("GET", CM + "?fieldSelector=%3D%3D", "", "", 400),
    ("GET", CM + "?labelSelector=a%3D%3D%3Db", "", "", 400),
    ("DELETE", CM + "/x", "garbage", JSON_CT, 400),
    ("DELETE", CM + "/x", '{"propagationPolicy": "Sometimes"}', JSON_CT, 400),
    ("DELETE", CM + "/x", '{"preconditions": "x"}', JSON_CT, 400),
    ("GET", CM + "/x/status", "", "", 404),
    ("GET", "/api/v1/namespaces/{ns}/pods/nope/log", "", "", 404),
    ("GET", "/apis/apps/v9", "", "", 404),
    ("GET", "/openapi/v3/apis/x/y", "", "", 404),
    ("POST", "/api/v1/namespaces", '{"metadata": {"name": "UPPER"}}', JSON_CT, 422),
    ("POST", CRD, '{"metadata": {"name": "x"}, "spec": {"versions": "x"}}', JSON_CT, 400),
    (
        "POST",
        CRD,
        '{"metadata": {"name": "x"}, "spec": {"group": "g.io", '
        '"names": {"plural": "xs", "kind": "X"}, "versions": [{"served": true}]}}',
        JSON_CT,
        422,
    ),
    ("POST", "/_sim/faults", '{"rules": [{"kind": "429", "count": "x"}]}', JSON_CT, 400),
    ("POST", "/_sim/faults", '{"rules": [{"kind": "429", "probability": "x"}]}', JSON_CT, 400),
]


@pytest.mark.parametrize(("method", "path", "body", "ctype", "code"), CASES)
def test_bad_input_is_a_status(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    method: str,
    path: str,
    body: str,
    ctype: str,
    code: int,
) -> None:
    url = sim_cluster.url + path.format(ns=sim_namespace)
    with httpx.Client() as client:
        client.post(sim_cluster.url + CM.format(ns=sim_namespace), json={"metadata": {"name": "x"}})
        resp = client.request(
            method, url, content=body.encode(), headers={"content-type": ctype} if ctype else {}
        )
    assert resp.status_code == code, resp.text
    status = resp.json()
    if not path.startswith("/_sim"):
        assert status["kind"] == "Status" and status["code"] == code and status["reason"]
