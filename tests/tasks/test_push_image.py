"""Push step: real pushes to the stack registry and to an htpasswd-protected registry,
ECR login and repository creation against moto, Harbor project creation against a
small stateful fake of that one endpoint."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from prefect_aws.credentials import AwsCredentials

from blocks.docker import DockerHost
from blocks.registry import EcrRegistry, RegistryCredentials
from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.redact import redact
from shipyard.core.registry import RegistryClient
from tasks.build_image import BuildImageConfig, run_build
from tasks.push_image import (
    PushImageConfig,
    PushLog,
    classify_push_error,
    decode_ecr_token,
    ensure_harbor_project,
    prepare_ecr,
    run_push,
)
from tests.fixtures.services import Stack
from tests.tasks.images import (
    APP_DOCKERFILE,
    AppRepo,
    AuthRegistry,
    TokenRegistry,
    unique_repository,
)

# --- pure core -----------------------------------------------------------------------------


def test_push_log_digest_and_error() -> None:
    log = PushLog()
    log.feed({"status": "The push refers to repository [r/x]"})
    log.feed({"status": "abc: digest: sha256:" + "1" * 64 + " size: 581"})
    assert log.digest == "sha256:" + "1" * 64 and log.error is None
    log.feed({"errorDetail": {"message": "unauthorized: authentication required"}})
    assert log.error == "unauthorized: authentication required"


def test_push_error_classes() -> None:
    err = classify_push_error("checking blob: unauthorized: authentication required", "reg:5000")
    assert isinstance(err, PermanentError) and "reg:5000" in str(err)
    assert isinstance(classify_push_error("dial tcp: connection refused", "r"), TransientError)
    assert isinstance(classify_push_error("manifest invalid", "r"), PermanentError)


def test_decode_ecr_token() -> None:
    token = base64.b64encode(b"AWS:pa55word").decode()
    host, user, password = decode_ecr_token(
        {"authorizationToken": token, "proxyEndpoint": "https://1.dkr.ecr.eu-west-1.amazonaws.com"}
    )
    assert (host, user, password) == ("1.dkr.ecr.eu-west-1.amazonaws.com", "AWS", "pa55word")


# --- real pushes --------------------------------------------------------------------------


@pytest.fixture
def built(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
) -> BuildImageConfig:
    """A freshly built local image on the stack engine (not pushed)."""
    app = make_app_repo({"Dockerfile": APP_DOCKERFILE.format(base=base_image), "app.txt": "p\n"})
    cfg = BuildImageConfig(
        repo_url=app.url,
        commit=app.commit,
        repository=unique_repository(stack, "push"),
        extra_tags=["1.0.0"],
    )
    run_build(cfg, docker_host)
    return cfg


def test_push_records_the_registry_digest(
    stack: Stack, docker_host: DockerHost, built: BuildImageConfig
) -> None:
    result = run_push(
        PushImageConfig(repository=built.repository, tags=[built.commit, "1.0.0"]), docker_host
    )
    assert result.reference == f"{built.repository}@{result.digest}"
    head = httpx.head(
        f"http://{stack.registry}/v2/{built.path}/manifests/1.0.0",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    assert head.headers["Docker-Content-Digest"] == result.digest
    # the digest reference resolves on the registry: what later steps deploy
    by_digest = httpx.head(
        f"http://{stack.registry}/v2/{built.path}/manifests/{result.digest}",
        headers={"Accept": head.headers["Content-Type"]},
    )
    assert by_digest.status_code == 200


def test_push_of_missing_local_image_is_permanent(stack: Stack, docker_host: DockerHost) -> None:
    with pytest.raises(PermanentError):
        run_push(
            PushImageConfig(repository=unique_repository(stack, "ghost"), tags=["nope"]),
            docker_host,
        )


def test_push_with_basic_auth(
    docker_host: DockerHost, built: BuildImageConfig, auth_registry: AuthRegistry
) -> None:
    target = f"{auth_registry.address}/{built.path}"
    local = docker_host.get_client().images.get(f"{built.repository}:{built.commit}")
    local.tag(target, "v1")
    creds = RegistryCredentials.for_registry(
        auth_registry.address, username=auth_registry.username, password=auth_registry.password
    )
    result = run_push(PushImageConfig(repository=target, tags=["v1"]), docker_host, creds)
    assert result.digest.startswith("sha256:")
    with creds.get_client() as api:
        found = api.manifest(built.path, "v1")
    assert found is not None and found[0] == result.digest

    wrong = RegistryCredentials.for_registry(
        auth_registry.address, username="alice", password="not-the-password"
    )
    with pytest.raises(PermanentError) as exc:
        run_push(PushImageConfig(repository=target, tags=["v1"]), docker_host, wrong)
    assert auth_registry.address in str(exc.value)
    assert "not-the-password" not in redact(str(exc.value))


def test_registry_client_refusal_names_registry(auth_registry: AuthRegistry) -> None:
    with (
        RegistryClient(auth_registry.address, insecure=True) as api,
        pytest.raises(PermanentError, match=auth_registry.address.replace(".", r"\.")),
    ):
        api.manifest("any/thing", "latest")


def test_reuse_check_against_authenticated_registry(
    docker_host: DockerHost, built: BuildImageConfig, auth_registry: AuthRegistry
) -> None:
    target = f"{auth_registry.address}/{built.path}"
    cfg = built.model_copy(update={"repository": target})
    creds = RegistryCredentials.for_registry(
        auth_registry.address, username=auth_registry.username, password=auth_registry.password
    )
    docker_host.get_client().images.get(f"{built.repository}:{built.commit}").tag(
        target, built.commit
    )
    pushed = run_push(PushImageConfig(repository=target, tags=[built.commit]), docker_host, creds)
    again = run_build(cfg, docker_host, creds)
    assert again.reused and again.digest == pushed.digest


# --- ECR (moto) -----------------------------------------------------------------------------


def test_ecr_login_and_repository_creation(moto_ecr: str) -> None:
    ecr = EcrRegistry(
        region="eu-west-1",
        endpoint_url=moto_ecr,
        aws_credentials=AwsCredentials(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="eu-west-1",
        ),
    )
    creds, created = prepare_ecr(ecr, "shop/cart")
    assert created
    assert creds.username == "AWS" and creds.password is not None
    assert creds.registry.endswith(".dkr.ecr.eu-west-1.amazonaws.com")
    repo = ecr.get_ecr_client().describe_repositories(repositoryNames=["shop/cart"])[
        "repositories"
    ][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    _, created_again = prepare_ecr(ecr, "shop/cart")
    assert not created_again


# --- Harbor (stateful fake of the projects endpoint) ----------------------------------------


class _Harbor(BaseHTTPRequestHandler):
    projects: set[str] = set()
    user = ("admin", "Harbor12345")

    def _authorized(self) -> bool:
        expected = base64.b64encode(":".join(self.user).encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def do_HEAD(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        name = query.get("project_name", [""])[0]
        self.send_response(200 if name in self.projects else 404)
        self.end_headers()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self._authorized():
            status = 401
        elif body["project_name"] in self.projects:
            status = 409
        else:
            self.projects.add(body["project_name"])
            status = 201
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def harbor() -> Iterator[str]:
    _Harbor.projects = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Harbor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_harbor_project_created_once(harbor: str) -> None:
    creds = RegistryCredentials(
        registry="harbor.local", username="admin", password="Harbor12345", insecure=True
    )
    assert ensure_harbor_project(harbor, "shop", creds) is True
    assert ensure_harbor_project(harbor, "shop", creds) is False
    bad = RegistryCredentials(
        registry="harbor.local", username="admin", password="x", insecure=True
    )
    with pytest.raises(PermanentError, match="refused"):
        ensure_harbor_project(harbor, "other", bad)


# --- the CLI ---------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from shipyard.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_build_push_rebuild_json(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app_repo({"Dockerfile": APP_DOCKERFILE.format(base=base_image), "app.txt": "c\n"})
    repo = unique_repository(stack, "cli")
    common = ["--docker-host", str(docker_host.base_url), "--json"]
    build = ["build", "--repo", app.url, "--commit", app.commit, "--image", repo, "--tag", "v9"]
    code, out, err = _cli(capsys, *build, *common)
    assert code == 0, err
    built = json.loads(out.splitlines()[-1])
    assert built["reused"] is False and built["tags"] == [app.commit, "v9"]

    code, out, err = _cli(capsys, "push", repo, "--tag", app.commit, "--tag", "v9", *common)
    assert code == 0, err
    pushed = json.loads(out.splitlines()[-1])
    assert pushed["reference"] == f"{repo}@{pushed['digest']}"

    code, out, _ = _cli(capsys, *build, *common)
    again = json.loads(out.splitlines()[-1])
    assert again["reused"] is True and again["reference"] == pushed["reference"]


def test_cli_bad_input_and_refused_push(
    capsys: pytest.CaptureFixture[str],
    docker_host: DockerHost,
    auth_registry: AuthRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = _cli(
        capsys, "build", "--repo", "git://x/y", "--commit", "abc", "--image", "r.example/a"
    )
    assert code == 2 and err.count("\n") == 1 and "40-character" in err
    monkeypatch.setenv("SHIPYARD_REGISTRY_PASSWORD", "wrong-password")  # env, not a stand-in
    base = docker_host.get_client().images.list()[0]
    target = f"{auth_registry.address}/cli/refused"
    base.tag(target, "v1")
    code, _out, err = _cli(
        capsys, "push", target, "--tag", "v1", "--username", "alice",
        "--docker-host", str(docker_host.base_url),
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1
    assert auth_registry.address in err and "wrong-password" not in err


def test_push_and_reuse_with_token_auth(
    docker_host: DockerHost, built: BuildImageConfig, token_registry: TokenRegistry
) -> None:
    target = f"{token_registry.address}/{built.path}"
    docker_host.get_client().images.get(f"{built.repository}:{built.commit}").tag(
        target, built.commit
    )
    creds = RegistryCredentials.for_registry(
        token_registry.address, username=token_registry.username, password=token_registry.password
    )
    pushed = run_push(PushImageConfig(repository=target, tags=[built.commit]), docker_host, creds)
    # our registry client did the bearer handshake too (manifest + config of the reuse check)
    before = token_registry.issued
    again = run_build(built.model_copy(update={"repository": target}), docker_host, creds)
    assert again.reused and again.digest == pushed.digest
    assert token_registry.issued > before
    anonymous = RegistryCredentials.for_registry(token_registry.address)
    with anonymous.get_client() as api, pytest.raises(PermanentError, match="refused"):
        api.manifest(built.path, built.commit)
