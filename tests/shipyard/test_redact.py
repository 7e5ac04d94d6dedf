"""No secret value ever reaches a log line, an artifact, a state or an exception message.

The end-to-end test plants secrets, runs a real flow against the real Prefect server
that logs them, fails with them and writes an artifact, then greps everything that
came out: captured stdout/stderr, the run's logs and state message from the API, and
the artifact.
"""

from __future__ import annotations

import logging
import time

import pytest
from pydantic import SecretStr

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.redact import MASK, install_log_redaction, redact, register_secret

PLANTED = "pl4nted-s3cret-VALUE-93f1"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"  # shape of a GitHub token


def test_registered_secret_is_masked() -> None:
    raw = register_secret(SecretStr(PLANTED))
    assert raw == PLANTED
    assert redact(f"password={PLANTED}!") == f"password={MASK}!"


def test_credentials_in_urls_and_headers_are_masked() -> None:
    assert redact("clone https://bot:hunter22@git.example/x.git") == (
        f"clone https://bot:{MASK}@git.example/x.git"
    )
    assert redact("Authorization: Bearer abc.def.ghi") == f"Authorization: Bearer {MASK}"
    assert TOKEN not in redact(f"token {TOKEN} leaked")
    assert "AKIAABCDEFGHIJKLMNOP" not in redact("key AKIAABCDEFGHIJKLMNOP")


def test_errors_are_redacted_at_construction() -> None:
    register_secret(PLANTED)
    assert PLANTED not in str(PermanentError(f"login failed with {PLANTED}"))
    assert PLANTED not in str(TransientError("x", hint=f"retry {PLANTED}"))


def test_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret(PLANTED)
    with caplog.at_level(logging.INFO):
        logging.getLogger("shipyard.test").info("using %s for push", PLANTED)
    assert PLANTED not in caplog.text
    assert MASK in caplog.text


@pytest.mark.usefixtures("prefect_api")
def test_planted_secrets_never_leave_a_flow_run(capfd: pytest.CaptureFixture[str]) -> None:
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    install_log_redaction()
    secret = SecretStr(PLANTED)

    @task(retries=0)
    def push(credential: SecretStr) -> None:
        value = register_secret(credential)
        get_run_logger().info("pushing with password %s and %s", value, TOKEN)
        raise PermanentError(f"registry refused credentials {value}")

    @flow(name="redaction-probe")
    def probe(credential: SecretStr) -> None:
        logger = get_run_logger()
        logger.warning("clone https://bot:%s@git.example/gitops.git", credential.get_secret_value())
        create_markdown_artifact(
            key="redaction-probe", markdown=redact(f"# report\nused `{PLANTED}`")
        )
        push(credential)

    state = probe(secret, return_state=True)
    assert state.is_failed()
    out, err = capfd.readouterr()

    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # run logs are shipped in batches; send them now
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        deadline = time.monotonic() + 15
        logs = []
        while time.monotonic() < deadline:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
            )
            if len(logs) >= 3:
                break
            time.sleep(0.2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["redaction-probe"]))
        )
    everything = "\n".join(
        [out, err, flow_run.state.message or "" if flow_run.state else ""]
        + [log.message for log in logs]
        + [str(a.data) for a in artifacts]
    )
    assert logs, "the flow's logs reached the API"
    assert artifacts, "the artifact reached the API"
    assert "registry refused credentials" in everything
    assert PLANTED not in everything
    assert TOKEN not in everything
    assert MASK in everything
