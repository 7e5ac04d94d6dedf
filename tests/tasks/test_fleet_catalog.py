"""A catalog environment that targets a fleet: validation (clear ConfigErrors naming app
and environment) and the plan of its rollout over labelled cluster blocks
(:func:`tasks.fleet.config.plan_environment`)."""

from __future__ import annotations

import pytest

from shipyard.core.catalog import Environment, parse_catalog
from shipyard.core.errors import ConfigError
from tasks.fleet.config import FleetCluster, plan_environment

CATALOG = """
apps:
  - name: cart
    image: registry.example/shop/cart
    environments:
      - name: dev
        path: envs/dev/cart
        namespace: shop-dev
      - name: prod
        path: envs/prod/cart
        namespace: shop-prod
        branch: release
{extra}
"""
FLEET = """\
        fleet:
          selector: {matchLabels: {env: prod}}
          waves:
            - {name: canary, selector: {matchLabels: {tier: canary}}, approve: false}
            - name: eu
              selector: {matchExpressions: [{key: region, operator: In, values: [eu]}]}
              max_parallel: 1
              bake_seconds: 30
            - {name: rest, approve: true}
          rollback: all
        verify: {workloads: [deployment/cart], timeout_seconds: 60}"""


def prod(extra: str) -> Environment:
    return parse_catalog(CATALOG.format(extra=extra)).app("cart").environment("prod")


def error(extra: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_catalog(CATALOG.format(extra=extra))
    return exc.value.message


def test_an_environment_targets_a_fleet_with_the_fleet_file_wave_schema() -> None:
    env = prod(FLEET)
    assert env.fleet is not None and env.fleet.rollback == "all"
    assert [w.name for w in env.fleet.waves] == ["canary", "eu", "rest"]
    eu = env.fleet.waves[1]
    assert (eu.max_parallel, eu.bake_seconds, eu.on_unreachable) == (1, 30, "fail")
    assert env.fleet.waves[2].approve
    single = prod("        cluster: edge")
    assert single.fleet is None and single.cluster == "edge"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "        cluster: edge\n" + FLEET,
            "apps['cart'].environments['prod']: Value error, environment 'prod' sets both "
            "'cluster' and 'fleet'",
        ),
        (
            FLEET.replace("{matchLabels: {env: prod}}", "{}"),
            "environments['prod'].fleet.selector: Value error, fleet.selector needs "
            "matchLabels or matchExpressions",
        ),
        (FLEET.replace("name: eu", "name: canary"), "wave names must be unique: canary"),
        (FLEET.replace("operator: In", "operator: Near"), "environments['prod'].fleet.waves"),
        (FLEET.replace("values: [eu]", "values: []"), "operator In needs values"),
        (FLEET.replace("rollback: all", "rollback: some"), "fleet.rollback"),
        (
            FLEET.replace("verify: {workloads: [deployment/cart], ", "verify: {"),
            "environment 'prod' targets a fleet: verify.workloads needs at least one",
        ),
        (FLEET.replace("max_parallel: 1", "max_parallel: 0"), "max_parallel"),
    ],
)
def test_catalog_fleet_errors_name_the_app_and_environment(extra: str, expected: str) -> None:
    message = error(extra)
    assert message.startswith("shipyard-catalog.yaml: apps['cart'].environments['prod']")
    assert expected in message


def cluster(name: str, **labels: str) -> FleetCluster:
    return FleetCluster(name=name, kubeconfig=f"/k/{name}", labels=labels)


BLOCKS = [
    cluster("eu-1", env="prod", region="eu", tier="canary"),
    cluster("eu-2", env="prod", region="eu"),
    cluster("us-1", env="prod", region="us"),
    cluster("ap-1", env="prod", region="ap"),
    cluster("staging-eu", env="staging", region="eu"),
]


def test_plan_picks_the_selected_blocks_into_waves() -> None:
    plan = plan_environment("cart", prod(FLEET), BLOCKS, "git://h/gitops.git", "abc123")
    assert [(w.name, w.clusters) for w in plan.waves] == [
        ("canary", ["eu-1"]),
        ("eu", ["eu-2"]),
        ("rest", ["us-1", "ap-1"]),
    ]
    assert [w.approve for w in plan.waves] == [False, False, True]
    assert plan.waves[1].bake_seconds == 30 and plan.waves[1].max_parallel == 1
    assert plan.fleet.metadata.name == "cart-prod"
    assert plan.record_name == "shipyard-fleet-cart-prod"
    assert (plan.repo_dir, plan.branch, plan.sha) == ("git://h/gitops.git", "release", "abc123")
    assert plan.path_for("us-1") == "envs/prod/cart" and plan.app_for("us-1") == "cart"
    assert plan.fleet.rollback == "all"
    assert plan.fleet.rollout.verify.workloads == ["deployment/cart"]


def test_plan_errors_name_the_app_and_environment() -> None:
    env = prod(FLEET)
    with pytest.raises(ConfigError, match=r"^cart/prod: the fleet selector matches no "):
        plan_environment("cart", env, [BLOCKS[-1]], "r", "abc")
    with pytest.raises(ConfigError, match=r"^cart/prod: wave 'canary': its selector matches"):
        plan_environment("cart", env, BLOCKS[1:], "r", "abc")
    with pytest.raises(ConfigError, match=r"^cart/prod: wave 'rest' matches no cluster"):
        plan_environment("cart", env, BLOCKS[:2], "r", "abc")
    with pytest.raises(ConfigError, match=r"^cart/dev does not target a fleet"):
        plan_environment(
            "cart", prod(FLEET).model_copy(update={"fleet": None, "name": "dev"}), BLOCKS, "r", "a"
        )
