"""`prefect block register` works for the project's own blocks, on the real server, and
a saved block loads back with its secret intact but never printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import SecretStr

MODULES = ["blocks.cluster", "blocks.storage", "blocks.gitops", "blocks.registry", "blocks.docker"]


@pytest.mark.usefixtures("prefect_api")
def test_prefect_block_register_registers_every_block_type(prefect_api: str) -> None:
    for module in MODULES:
        result = subprocess.run(
            [sys.executable, "-m", "prefect", "block", "register", "-m", module],
            env={**os.environ, "PREFECT_API_URL": prefect_api},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        slugs = {t.slug for t in client.read_block_types()}
    assert {
        "shipyard-kubernetes-cluster",
        "shipyard-backup-storage",
        "shipyard-gitops-repository",
        "shipyard-registry-credentials",
    } <= slugs


@pytest.mark.usefixtures("prefect_api")
def test_saved_block_keeps_its_secret_out_of_repr() -> None:
    from blocks.registry import RegistryCredentials

    RegistryCredentials(
        registry="registry.example.com", username="bot", password=SecretStr("s3cr3t-pw-777")
    ).save("test-registry", overwrite=True)
    loaded = RegistryCredentials.load("test-registry")
    assert isinstance(loaded, RegistryCredentials)
    assert loaded.password is not None
    assert loaded.password.get_secret_value() == "s3cr3t-pw-777"
    assert "s3cr3t-pw-777" not in repr(loaded)
