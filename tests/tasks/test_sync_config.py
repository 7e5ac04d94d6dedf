"""SyncConfig / VerifyPlan from the catalog, and config validation."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from flows.sync_verify import VerifyPlan
from shipyard.core.catalog import parse_catalog
from tasks.sync_app import SyncConfig

CATALOG = """
apps:
  - name: cart
    image: reg.example/shop/cart
    environments:
      - name: dev
        path: envs/dev
        namespace: shop-dev
        verify:
          workloads: [deployment/cart]
          timeout_seconds: 60
          smoke: [{url: "http://cart/healthz"}]
      - name: prod
        path: envs/prod
        namespace: shop
        sync: {driver: argocd, application: cart-prod}
      - name: edge
        path: envs/edge
        namespace: edge
        sync: {driver: flux, kustomization: cart-edge, source: gitops}
"""


def test_for_environment_per_driver() -> None:
    app = parse_catalog(CATALOG).app("cart")
    sha = "a" * 40
    dev = SyncConfig.for_environment(
        app, app.environment("dev"), repo="file:///r.git", revision=sha
    )
    assert (dev.driver, dev.path, dev.namespace, dev.app, dev.timeout_seconds) == (
        "apply",
        "envs/dev",
        "shop-dev",
        "cart",
        60,
    )
    prod = SyncConfig.for_environment(app, app.environment("prod"), repo="r", revision=sha)
    assert (prod.driver, prod.application, prod.wait_healthy) == ("argocd", "cart-prod", False)
    rest = SyncConfig.for_environment(
        app,
        app.environment("prod"),
        repo="r",
        revision=sha,
        argocd_url="https://argocd",
        argocd_token=SecretStr("t"),
    )
    assert rest.driver == "argocd-rest" and "tok-XYZ" not in repr(rest)
    edge = SyncConfig.for_environment(app, app.environment("edge"), repo="r", revision=sha)
    assert (edge.driver, edge.kustomization, edge.source) == ("flux", "cart-edge", "gitops")
    plan = VerifyPlan.for_environment(app.environment("dev"), "sha256:" + "b" * 64)
    assert [(w.workload, w.namespace, w.timeout_seconds) for w in plan.workloads] == [
        ("deployment/cart", "shop-dev", 60)
    ]
    assert plan.smoke[0].url == "http://cart/healthz"
    assert plan.without_digest().workloads[0].digest is None and not plan.without_digest().smoke


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"driver": "apply", "path": "x"}, "needs repo, namespace"),
        ({"driver": "argocd"}, "needs 'application'"),
        ({"driver": "argocd-rest", "application": "a"}, "needs 'argocd_url'"),
        ({"driver": "flux"}, "needs 'kustomization'"),
        ({"driver": "flux", "kustomization": "k", "revision": "main"}, "must be a commit sha"),
    ],
)
def test_invalid_configs(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SyncConfig(**kwargs)  # type: ignore[arg-type]
