"""Seed the local stack with the demo: base image, app source repo, GitOps repo with
catalog and manifests, cluster namespaces, and the Prefect blocks the flows load.

Idempotent: a second run leaves existing repos, images and blocks as they are.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shipyard.demo import content
from shipyard.stack.model import StackLayout
from shipyard.stack.services import create_bare_repo

GITOPS_BLOCK = "shipyard-gitops"
CLUSTER_BLOCK = "default"
REGISTRY_BLOCK = "shipyard-registry"
DOCKER_BLOCK = "shipyard-docker"
BACKUP_BLOCK = "shipyard-backups"
FLOWS_NAMESPACE = "shipyard-flows"


@dataclass(frozen=True)
class DemoSeed:
    """Where the seeded demo lives."""

    app: str
    image: str
    source_url: str
    source_commit: str
    gitops_url: str
    seed_reference: str
    fleet: tuple[str, ...] = ()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Shipyard Demo", "-c", "user.email=demo@shipyard.local", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _publish(bare: Path, files: dict[str, str], message: str, only_if_empty: bool) -> str:
    """Commit ``files`` to ``bare``'s main branch (skipped when not empty and asked)."""
    with tempfile.TemporaryDirectory(prefix="shipyard-seed-") as tmp:
        work = Path(tmp) / "w"
        subprocess.run(
            ["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True
        )
        if _has_head(work) and only_if_empty:
            return _git(work, "rev-parse", "HEAD")
        _git(work, "checkout", "-q", "-B", "main")
        for name, text in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _git(work, "add", "-A")
        if _git(work, "status", "--porcelain"):
            _git(work, "commit", "-q", "-m", message)
            _git(work, "push", "-q", "origin", "main")
        return _git(work, "rev-parse", "HEAD")


def _has_head(work: Path) -> bool:
    return (
        subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=work, capture_output=True
        ).returncode
        == 0
    )


def seed_repos(layout: StackLayout, env: dict[str, str]) -> tuple[str, str]:
    """Create the app source and GitOps repos; return (source commit, gitops commit)."""
    registry, git_url = env["SHIPYARD_REGISTRY"], env["SHIPYARD_GIT_URL"]
    source = create_bare_repo(layout, content.SOURCE_REPO)
    gitops = create_bare_repo(layout, "gitops")
    source_commit = _publish(
        source, content.app_files(registry), "cart: first version", only_if_empty=True
    )
    files = {"shipyard-catalog.yaml": content.catalog(registry, git_url)}
    for environment in ("dev", "prod"):
        files.update(content.environment_files(registry, environment, "seed"))
    files["README.md"] = "# GitOps repo of the Shipyard demo\n\nManaged by Shipyard.\n"
    gitops_commit = _publish(gitops, files, "demo: catalog and manifests", only_if_empty=True)
    return source_commit, gitops_commit


def seed_image(env: dict[str, str], source_commit: str, source_url: str) -> str:
    """Build and push the app's first image as ``:seed`` (what the manifests start on)."""
    from blocks.docker import DockerHost
    from blocks.registry import RegistryCredentials
    from shipyard.stack.base_image import ensure_base_image
    from tasks.build_image import BuildImageConfig, run_build
    from tasks.push_image import PushImageConfig, run_push

    registry = env["SHIPYARD_REGISTRY"]
    host = DockerHost(base_url=env["DOCKER_HOST"])
    credentials = RegistryCredentials(registry=registry, insecure=True)
    ensure_base_image(host.get_client(), registry)
    image = f"{registry}/{content.IMAGE_PATH}"
    built = run_build(
        BuildImageConfig(
            repo_url=source_url, commit=source_commit, repository=image, extra_tags=["seed"]
        ),
        host,
        credentials,
    )
    if built.reused and built.reference:
        return str(built.reference)
    pushed = run_push(PushImageConfig(repository=image, tags=built.tags), host, credentials)
    return pushed.reference


def seed_cluster(kubeconfig: str) -> None:
    """Namespaces for the app and for flow-run pods (those run as real processes)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from shipyard.core.kube import api_client

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        wanted: dict[str, dict[str, str]] = {ns: {} for ns in content.NAMESPACES.values()}
        wanted[FLOWS_NAMESPACE] = {"sim.shipyard.dev/run-processes": "true"}
        for name, labels in wanted.items():
            try:
                core.create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
        # The flow runs' ServiceAccount (prefect.yaml's service_account_name), as
        # deployments/rbac/flow-runner.yaml creates it: without it no flow pod is admitted.
        try:
            core.create_namespaced_service_account(
                FLOWS_NAMESPACE,
                client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shipyard-flow-runner")),
            )
        except ApiException as exc:
            if exc.status != 409:
                raise


def seed_blocks(env: dict[str, str], gitops_url: str) -> None:
    """Save the blocks the deployed flows load by name."""
    from blocks.cluster import KubernetesCluster
    from blocks.gitops import GitOpsRepository
    from blocks.registry import RegistryCredentials

    GitOpsRepository(url=gitops_url, branch="main").save(GITOPS_BLOCK, overwrite=True)
    KubernetesCluster(name=CLUSTER_BLOCK, kubeconfig_path=env.get("KUBECONFIG")).save(
        CLUSTER_BLOCK, overwrite=True
    )
    RegistryCredentials(
        registry=env["SHIPYARD_REGISTRY"],
        insecure=True,
        # the stack's trivy DB mirror (`stack up` serves it): flow pods' scans use it
        trivy_db_repository=env.get("SHIPYARD_TRIVY_DB_REPOSITORY"),
    ).save(REGISTRY_BLOCK, overwrite=True)
    # The engine that builds a `deliver` from a source commit: flow pods do not inherit
    # the stack's DOCKER_HOST, they load this block.
    from blocks.docker import DockerHost

    DockerHost(base_url=env["DOCKER_HOST"]).save(DOCKER_BLOCK, overwrite=True)
    if endpoint := env.get("SHIPYARD_S3_ENDPOINT"):
        from prefect_aws import AwsCredentials
        from pydantic import SecretStr

        from blocks.storage import BackupStorage

        credentials = AwsCredentials(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=SecretStr(env.get("AWS_SECRET_ACCESS_KEY", "")),
            region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        storage = BackupStorage(bucket=BACKUP_BLOCK, endpoint_url=endpoint, credentials=credentials)
        s3 = storage.get_s3_client()
        if BACKUP_BLOCK not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BACKUP_BLOCK)
        storage.save(BACKUP_BLOCK, overwrite=True)


def seed_fleet(layout: StackLayout, env: dict[str, str]) -> list[str]:
    """When the stack runs clusters (``stack up --clusters N``), make prod a fleet.

    Each cluster gets the app's namespaces and a KubernetesCluster block of its name
    with its labels plus ``fleet: local`` (the first is ``tier: canary``); the catalog's
    prod then targets those blocks in two waves, canary then the rest
    (:func:`content.catalog`). Returns the cluster names (none: prod stays one cluster).
    """
    from blocks.cluster import KubernetesCluster
    from shipyard.stack.clusters import FLEET_NAME, kubeconfig_of, stack_clusters

    clusters = stack_clusters(layout)
    if not clusters:
        return []
    for cluster in clusters:
        kubeconfig = str(kubeconfig_of(layout, cluster))
        seed_cluster(kubeconfig)
        labels = {**cluster.labels, content.FLEET_LABEL: FLEET_NAME}
        KubernetesCluster(name=cluster.name, kubeconfig_path=kubeconfig, labels=labels).save(
            cluster.name, overwrite=True
        )
    text = content.catalog(env["SHIPYARD_REGISTRY"], env["SHIPYARD_GIT_URL"], fleet=FLEET_NAME)
    gitops = create_bare_repo(layout, "gitops")
    _publish(gitops, {"shipyard-catalog.yaml": text}, "demo: prod is a fleet", only_if_empty=False)
    return [c.name for c in clusters]


def seed_demo(layout: StackLayout, env: dict[str, str]) -> DemoSeed:
    """Everything above, in order; safe to run again."""
    git_url = env["SHIPYARD_GIT_URL"]
    source_url = f"{git_url}/{content.SOURCE_REPO}.git"
    gitops_url = f"{git_url}/gitops.git"
    source_commit, _ = seed_repos(layout, env)
    reference = seed_image(env, source_commit, source_url)
    if env.get("KUBECONFIG"):
        seed_cluster(env["KUBECONFIG"])
    seed_blocks(env, gitops_url)
    fleet = seed_fleet(layout, env)
    return DemoSeed(
        app=content.APP,
        image=f"{env['SHIPYARD_REGISTRY']}/{content.IMAGE_PATH}",
        source_url=source_url,
        source_commit=source_commit,
        gitops_url=gitops_url,
        seed_reference=reference,
        fleet=tuple(fleet),
    )
