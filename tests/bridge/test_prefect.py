"""Against a real Prefect server: events arrive, survive an outage, and a real
registry push travels registry -> notification -> bridge -> Prefect event.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shipyard.bridge.server import BackgroundBridge, BridgeConfig
from shipyard.core.catalog import parse_catalog
from tests.bridge.conftest import PrivatePrefect

pytestmark = pytest.mark.slow

SECRET = "e2e-bridge-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def ecr_push(tag: str, repository: str = "shop/orders") -> bytes:
    """An EventBridge ECR push with its own id, so each is a distinct delivery."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": "123456789012",
            "time": "2026-11-27T23:30:20Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {
                "result": "SUCCESS",
                "repository-name": repository,
                "image-digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
                "action-type": "PUSH",
                "image-tag": tag,
            },
        }
    ).encode()


def wait(predicate: Any, timeout: float, what: str, state: Any = None) -> None:
    """Poll ``predicate``; on timeout fail with ``what`` and what ``state()`` shows."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            seen = f"; state: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")
        time.sleep(0.2)


TRIGGER_FILE = Path(__file__).parents[2] / "deployments" / "triggers" / "deliver-on-push.yaml"
DELIVER_PARAMETERS = ("app", "image", "tag", "digest", "trigger", "change_time")


def create_deliver_deployment(api: str) -> str:
    """A real deployment with deliver's trigger-facing parameters; no worker runs it."""
    with httpx.Client(base_url=api, timeout=10) as c:
        flow = c.post("/flows/", json={"name": f"deliver-probe-{uuid.uuid4().hex[:6]}"})
        flow.raise_for_status()
        schema = {
            "title": "Parameters",
            "type": "object",
            "properties": {p: {"title": p, "type": "string"} for p in DELIVER_PARAMETERS},
            "required": list(DELIVER_PARAMETERS),
        }
        body = {
            "name": "deliver",
            "flow_id": flow.json()["id"],
            "parameter_openapi_schema": schema,
            "enforce_parameter_schema": True,
            "entrypoint": "flows/deliver.py:deliver",
        }
        # A freshly started server on SQLite can answer 503 while it is busy (the same
        # transient the flows retry); setup retries it a few times too.
        for _ in range(10):
            dep = c.post("/deployments/", json=body)
            if dep.status_code != 503:
                break
            time.sleep(1)
        dep.raise_for_status()
        deployment_id: str = dep.json()["id"]
        return deployment_id


def install_trigger(api: str, deployment_id: str) -> None:
    """Turn the snippet into the automation `prefect deploy` would create."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from ruamel.yaml import YAML

    (raw,) = YAML(typ="safe").load(TRIGGER_FILE.read_text())["triggers"]
    trigger = DeploymentEventTrigger.model_validate(raw)
    trigger.set_deployment_id(uuid.UUID(deployment_id))
    automation = trigger.as_automation().model_dump(mode="json")
    r = httpx.post(f"{api}/automations/", json=automation, timeout=10)
    assert r.status_code == 201, r.text


def flow_runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"id": {"any_": [deployment_id]}}},
        timeout=10,
    )
    r.raise_for_status()
    runs: list[dict[str, Any]] = r.json()
    return runs


def test_spool_survives_a_prefect_outage_and_drains_after(
    private_prefect: PrivatePrefect, tmp_path: Path
) -> None:
    repo = f"outage/{uuid.uuid4().hex[:8]}"
    resource = f"oci.image.123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repo}"
    api = private_prefect.api_url
    deployment_id = create_deliver_deployment(api)
    install_trigger(api, deployment_id)
    time.sleep(2)  # the server's automation cache picks new automations up
    config = BridgeConfig(
        secret=SecretStr(SECRET),
        spool_dir=tmp_path / "spool",
        prefect_api_url=api,
        catalog=parse_catalog(
            "apps:\n"
            "  - name: orders\n"
            f"    image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repo}\n"
            "    environments: [{name: dev, path: envs/dev, namespace: orders-dev}]\n"
        ),
    )
    with BackgroundBridge(config) as bridge, httpx.Client(base_url=bridge.url) as c:
        r = c.post("/hooks/ecr", content=ecr_push("before", repo), headers=AUTH)
        assert r.status_code == 202
        wait(lambda: bridge.state.metrics.emitted == 1, 30, "the first event to be emitted")
        # Prefect answers 204 before its in-memory queue has stored and evaluated the
        # event; stop it only once both happened (see docs/bridge.md).
        wait(lambda: len(private_prefect.events(resource_prefix=resource)) == 1, 30, "storage")
        wait(lambda: len(flow_runs(api, deployment_id)) == 1, 30, "the first run")
        # ... and the bridge has read it back and dropped it from the spool.
        wait(
            lambda: bridge.state.spool is not None and bridge.state.spool.depth == 0,
            30,
            "the first event's read-back",
        )

        private_prefect.stop()
        tags = [f"during-{i:02d}" for i in range(20)]
        for tag in tags[:10]:
            assert (
                c.post("/hooks/ecr", content=ecr_push(tag, repo), headers=AUTH).status_code == 202
            )
        wait(lambda: not c.get("/healthz").json()["prefect"] == "ok", 30, "the outage to be seen")
        assert "shipyard_bridge_prefect_up 0" in c.get("/metrics").text
        assert c.get("/healthz").json()["spool_depth"] == 10
    # The bridge itself goes away during the outage too; the spool is all that is left.

    bridge2 = BackgroundBridge(config)
    with bridge2, httpx.Client(base_url=bridge2.url) as c:
        for tag in tags[10:]:
            assert (
                c.post("/hooks/ecr", content=ecr_push(tag, repo), headers=AUTH).status_code == 202
            )
        time.sleep(2.0)  # stay down a while: the forwarder keeps backing off
        assert c.get("/healthz").json()["spool_depth"] == 20

        private_prefect.start()
        wait(
            lambda: bridge2.state.spool is not None and bridge2.state.spool.depth == 0,
            60,
            "the spool to drain",
        )
        assert "shipyard_bridge_spool_depth 0" in c.get("/metrics").text

    events = private_prefect.wait_for_events(21, resource)
    assert [e["payload"]["tag"] for e in events] == ["before", *tags]

    # Every push, including those spooled through the outage, started `deliver` once.
    wait(
        lambda: len(flow_runs(api, deployment_id)) >= 21,
        60,
        "a deliver run per push",
        lambda: sorted(r["parameters"]["tag"] for r in flow_runs(api, deployment_id)),
    )
    time.sleep(2)
    runs = flow_runs(api, deployment_id)
    assert sorted(r["parameters"]["tag"] for r in runs) == sorted(["before", *tags])

    # At least once, effectively once: resending delivered ids stores nothing new and
    # starts no second run. (Only ids this Prefect server process has seen: its
    # trigger service remembers seen ids in memory, so the pre-restart event is left
    # out; see docs/bridge.md.)
    spool_files = sorted((tmp_path / "spool").glob("seg-*.jsonl"))
    records = [json.loads(line) for f in spool_files for line in f.read_text().splitlines()]
    replay = [r for r in records if r["payload"]["tag"] != "before"]
    assert len(replay) == 20
    r = httpx.post(f"{api}/events", json=replay, timeout=10)
    assert r.status_code == 204
    time.sleep(3)
    assert len(private_prefect.events(resource_prefix=resource)) == 21
    assert len(flow_runs(api, deployment_id)) == 21


def push_image(registry: str, repository: str, tag: str) -> str:
    """Push a tiny OCI image over the plain registry HTTP API; return the manifest digest."""
    base = f"http://{registry}/v2/{repository}"
    with httpx.Client(timeout=10) as c:

        def blob(data: bytes) -> dict[str, Any]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = c.post(f"{base}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["Location"]
            if location.startswith("/"):
                location = f"http://{registry}{location}"
            # The Location carries upload state in its query; add the digest to it.
            done = c.put(
                f"{location}{'&' if '?' in location else '?'}digest={digest}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
            return {"digest": digest, "size": len(data)}

        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        layer = b"shipyard bridge e2e layer " + uuid.uuid4().bytes
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer)}],
            }
        ).encode()
        r = c.put(
            f"{base}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201, r.text
        digest: str = r.headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
        return digest


def test_registry_push_reaches_prefect(
    private_prefect: PrivatePrefect, notifying_registry: Any, tmp_path: Path
) -> None:
    if not private_prefect.up:
        private_prefect.start()
    config = BridgeConfig(
        secret=SecretStr(SECRET),
        spool_dir=tmp_path / "spool",
        prefect_api_url=private_prefect.api_url,
    )
    with BackgroundBridge(config) as bridge:
        registry = notifying_registry(f"{bridge.url}/hooks/distribution", SECRET)
        repository = f"e2e/app-{uuid.uuid4().hex[:6]}"
        digest = push_image(registry.host, repository, "1.0.0")
        wait(lambda: bridge.state.metrics.emitted >= 1, 30, "the push event to be emitted")
        metrics = bridge.state.metrics
        assert metrics.ignored["distribution"] >= 1  # the blob pushes
        assert metrics.rejected == {}

    (event,) = private_prefect.wait_for_events(1, f"oci.image.{registry.host}/{repository}")
    assert event["event"] == "registry.image.pushed"
    assert event["resource"]["prefect.resource.id"] == f"oci.image.{registry.host}/{repository}"
    payload = event["payload"]
    assert (payload["registry"], payload["repository"], payload["tag"], payload["digest"]) == (
        registry.host,
        repository,
        "1.0.0",
        digest,
    )
    assert payload["source"] == "distribution" and payload["pushed_at"]


def test_trigger_snippet_starts_deliver_with_the_push(
    private_prefect: PrivatePrefect, tmp_path: Path
) -> None:
    if not private_prefect.up:
        private_prefect.start()
    api = private_prefect.api_url
    deployment_id = create_deliver_deployment(api)
    install_trigger(api, deployment_id)
    time.sleep(2)  # the server's automation cache picks new automations up

    catalog = parse_catalog(
        "apps:\n"
        "  - name: orders\n"
        "    image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/orders\n"
        "    environments: [{name: dev, path: envs/dev, namespace: orders-dev}]\n"
    )
    config = BridgeConfig(
        secret=SecretStr(SECRET),
        spool_dir=tmp_path / "spool",
        prefect_api_url=api,
        catalog=catalog,
    )
    with BackgroundBridge(config) as bridge, httpx.Client(base_url=bridge.url) as c:
        known = c.post("/hooks/ecr", content=ecr_push("7.0.0", "shop/orders"), headers=AUTH)
        unknown = c.post("/hooks/ecr", content=ecr_push("7.0.0", "shop/unknown"), headers=AUTH)
        assert (known.status_code, unknown.status_code) == (202, 202)
        wait(lambda: bridge.state.metrics.emitted == 2, 30, "both events to be emitted")

    wait(lambda: len(flow_runs(api, deployment_id)) >= 1, 60, "the automation to create a run")
    time.sleep(3)  # give a wrongly matching second run the chance to appear
    (run,) = flow_runs(api, deployment_id)
    assert run["parameters"] == {
        "app": "orders",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/orders",
        "tag": "7.0.0",
        "digest": "sha256:" + hashlib.sha256(b"7.0.0").hexdigest(),
        "trigger": f"registry-push:ecr:{known.json()['events'][0]['event_id']}",
        "change_time": "2026-11-27T23:30:20Z",  # the registry's push time (EventBridge time)
    }
