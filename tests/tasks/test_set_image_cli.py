"""`shipyard set-image` CLI: exit codes, JSON shape, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shipyard.cli.main import main

DEPLOY = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cart\nspec:\n  template:\n"
    "    spec:\n      containers:\n        - name: cart\n          image: shop/cart:1.0 # pin\n"
)
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "gitops"
    (root / "apps" / "cart").mkdir(parents=True)
    (root / "apps" / "cart" / "deploy.yaml").write_text(DEPLOY)
    git = ["git", "-C", str(root)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "config", "user.name", "Tester"], check=True)
    subprocess.run([*git, "config", "user.email", "t@example.com"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _head(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_json_commit_then_idempotent(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["set-image", "--repo-dir", str(repo), "--path", "apps/cart", "--image", "shop/cart"]
    code, out, err = _run([*args, "--tag", "1.1", "--commit", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report == {
        "changed": True,
        "changes": [
            {"file": "apps/cart/deploy.yaml", "old": "shop/cart:1.0", "new": "shop/cart:1.1"}
        ],
        "commit": _head(repo),
    }
    assert "image: shop/cart:1.1 # pin" in (repo / "apps/cart/deploy.yaml").read_text()
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
    )
    assert status.stdout == ""
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%an <%ae>%n%s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.splitlines() == ["Tester <t@example.com>", "cart(apps/cart): shop/cart 1.0 -> 1.1"]

    head = _head(repo)
    code, out, _ = _run([*args, "--tag", "1.1", "--commit", "--json"], capsys)
    assert code == 0
    assert json.loads(out) == {"changed": False, "changes": [], "commit": None}
    assert _head(repo) == head


def test_digest_without_commit(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        [
            "set-image",
            "--repo-dir",
            str(repo),
            "--image",
            "shop/cart",
            "--digest",
            DIGEST,
            "--json",
        ],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert report["changed"] is True and report["commit"] is None
    assert report["changes"][0]["new"] == f"shop/cart:1.0@{DIGEST}"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image", "shop/cart", "--tag", "bad tag!"], "invalid tag"),
        (["--image", "shop/cart", "--digest", "sha256:short"], "hex"),
        (["--image", "shop/cart", "--digest", "md5:" + "0" * 32], "use sha256 or sha512"),
        (["--image", "shop/cart", "--tag", "1", "--values-repository-key", "a.b"], "'tag'"),
        (["--image", "shop/cart", "--tag", "1", "--digest", DIGEST], "exactly one"),
        (["--image", "shop/cart"], "exactly one"),
        (["--tag", "1"], "--image is required"),
        (["--image", "shop/web", "--tag", "1"], "images there: shop/cart"),
        (["--image", "shop/cart", "--tag", "1", "--path", "../x"], "inside the repo"),
        (["--image", "shop/cart", "--tag", "1", "--path", "nope"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    before = (repo / "apps/cart/deploy.yaml").read_bytes()
    head = _head(repo)
    code, out, err = _run(["set-image", "--repo-dir", str(repo), *extra, "--commit"], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert (repo / "apps/cart/deploy.yaml").read_bytes() == before
    assert _head(repo) == head


def test_yaml_error_names_file_and_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "apps/cart/broken.yaml").write_text("a:\n  - [x\n")
    code, _, err = _run(
        ["set-image", "--repo-dir", str(repo), "--image", "shop/cart", "--tag", "2"], capsys
    )
    assert code == 2 and "apps/cart/broken.yaml:" in err
    assert "shop/cart:1.0" in (repo / "apps/cart/deploy.yaml").read_text()


def test_commit_outside_git_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.yaml").write_text(DEPLOY)
    code, _, err = _run(
        [
            "set-image",
            "--repo-dir",
            str(tmp_path),
            "--image",
            "shop/cart",
            "--tag",
            "2",
            "--commit",
        ],
        capsys,
    )
    assert code == 2 and "not a git working tree" in err
    assert "shop/cart:1.0" in (tmp_path / "d.yaml").read_text()


CHART_VALUES = "app:\n  image:\n    name: shop/cart\n    version: 1.0 # released\n"


def test_values_keys_flags_pin_a_digest_in_a_chart_without_a_digest_key(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the flags the chart's layout is not recognised; with them the digest key is
    named (and added beside the tag), and the change is committed."""
    chart = repo / "charts" / "cart"
    chart.mkdir(parents=True)
    (chart / "values.yaml").write_text(CHART_VALUES)
    base = ["set-image", "--repo-dir", str(repo), "--path", "charts/cart", "--image", "shop/cart"]
    code, _, err = _run([*base, "--digest", DIGEST], capsys)
    assert code == 2 and "images there: none" in err

    keys = [
        "--values-repository-key",
        "app.image.name",
        "--values-tag-key",
        "app.image.version",
        "--values-digest-key",
        "app.image.digest",
    ]
    code, out, err = _run([*base, *keys, "--digest", DIGEST, "--commit", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["changes"] == [
        {
            "file": "charts/cart/values.yaml",
            "old": "shop/cart:1.0",
            "new": f"shop/cart:1.0@{DIGEST}",
        }
    ]
    assert (chart / "values.yaml").read_text() == (
        f"app:\n  image:\n    name: shop/cart\n    version: 1.0 # released\n    digest: {DIGEST}\n"
    )
    code, out, _ = _run([*base, *keys, "--tag", "1.10", "--json"], capsys)
    assert code == 0
    assert 'version: "1.10" # released' in (chart / "values.yaml").read_text()
    assert '    digest: ""\n' in (chart / "values.yaml").read_text()  # a new tag clears the pin
