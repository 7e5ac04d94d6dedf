"""The app catalog: typed, documented, and a clear error naming the broken entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.catalog import CATALOG_FILE, load_catalog, parse_catalog
from shipyard.core.errors import ConfigError

GOOD = """\
apiVersion: shipyard.dev/v1
apps:
  - name: cart
    image: 127.0.0.1:5000/shop/cart
    source:
      repo: git://127.0.0.1:9418/cart.git
    environments:
      - name: dev
        path: envs/dev/cart
        namespace: shop-dev
        verify:
          workloads: [deployment/cart]
      - name: prod
        path: envs/prod/cart
        namespace: shop
        protected: true
        sync:
          driver: argocd
          application: cart-prod
  - name: cart-migrate
    image: 127.0.0.1:5000/shop/cart-migrate
    environments:
      - name: dev
        path: envs/dev/cart-migrate
        namespace: shop-dev
"""


def test_parses_and_navigates() -> None:
    catalog = parse_catalog(GOOD)
    cart = catalog.app("cart")
    assert cart.source is not None and cart.source.dockerfile == "Dockerfile"
    assert cart.environment("dev").sync.driver == "apply"
    assert cart.environment("prod").protected
    assert cart.next_environment("dev") == cart.environment("prod")
    assert cart.next_environment("prod") is None


def test_image_lookup_is_exact() -> None:
    catalog = parse_catalog(GOOD)
    app = catalog.app_for_image("127.0.0.1:5000/shop/cart")
    assert app is not None and app.name == "cart"
    migrate = catalog.app_for_image("shop/cart-migrate")
    assert migrate is not None and migrate.name == "cart-migrate"
    assert catalog.app_for_image("shop/car") is None


def test_unknown_names_list_the_known_ones() -> None:
    catalog = parse_catalog(GOOD)
    with pytest.raises(ConfigError, match="known: cart, cart-migrate"):
        catalog.app("checkout")
    with pytest.raises(ConfigError, match="known: dev, prod"):
        catalog.app("cart").environment("qa")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apps: [1", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        (
            GOOD.replace("application: cart-prod", "kustomization: x"),
            "apps['cart'].environments['prod'].sync: Value error, driver argocd needs",
        ),
        (
            GOOD.replace("path: envs/dev/cart\n", "path: ../escape\n"),
            "apps['cart'].environments['dev'].path",
        ),
        (GOOD.replace("shop/cart\n", "shop/cart:1.0\n", 1), "must be a repository without tag"),
        (GOOD.replace("[deployment/cart]", "[pod/cart]"), "workload 'pod/cart'"),
        (GOOD.replace("name: cart-migrate", "name: cart"), "duplicate apps"),
        (GOOD.replace("namespace: shop\n", "namespace: Shop\n"), "not a lower-case DNS label"),
        (GOOD + "bogus: 1\n", "bogus: Extra inputs are not permitted"),
    ],
)
def test_malformed_catalog_names_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_catalog(text, "catalog.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("catalog.yaml")
    assert "\n" not in str(info.value)


def test_load_from_repo_dir(tmp_path: Path) -> None:
    (tmp_path / CATALOG_FILE).write_text(GOOD)
    assert [a.name for a in load_catalog(tmp_path).apps] == ["cart", "cart-migrate"]


def test_missing_catalog_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"create shipyard-catalog\.yaml"):
        load_catalog(tmp_path)
