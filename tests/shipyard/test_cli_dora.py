"""`shipyard dora` through the real CLI entry point: JSON keys exactly as issue 16 names
them, breakdowns, comparisons, the table, and bad input as one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shipyard.cli.main import main

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]
KEYS = [
    "deployments",
    "failures",
    "deployment_frequency_per_day",
    "lead_time_hours_median",
    "change_failure_rate",
    "time_to_restore_minutes_mean",
    "availability_percent",
    "platform_score",
    "bands",
    "window_days",
]
LINES = [
    # cart/prod: two succeeded, one failed (verify, restored after 30 min)
    '{"app": "cart", "environment": "prod", "cluster": "eu-1", "outcome": "succeeded", '
    '"change_time": "2026-11-01T10:00:00Z", "deployed_at": "2026-11-01T12:00:00Z", '
    '"restored_at": null, "digest": "sha256:aa", "source_commit": "abc", "cause": null, '
    '"flow_run": "r1"}',
    '{"app": "cart", "environment": "prod", "outcome": "failed", '
    '"change_time": "2026-11-02T10:00:00Z", "deployed_at": "2026-11-02T12:00:00Z", '
    '"restored_at": "2026-11-02T12:30:00Z", "cause": "verify"}',
    '{"app": "cart", "environment": "prod", "outcome": "succeeded", '
    '"change_time": "2026-11-05T08:00:00Z", "deployed_at": "2026-11-05T12:00:00Z"}',
    # shop/dev: one succeeded, one failed (sync, never restored)
    '{"app": "shop", "environment": "dev", "outcome": "succeeded", '
    '"change_time": "2026-11-03T10:00:00Z", "deployed_at": "2026-11-03T11:00:00Z"}',
    '{"app": "shop", "environment": "dev", "outcome": "failed", '
    '"deployed_at": "2026-11-06T00:00:00Z", "cause": "sync"}',
    # before the window
    '{"app": "cart", "environment": "prod", "outcome": "succeeded", '
    '"change_time": "2026-10-20T10:00:00Z", "deployed_at": "2026-10-21T10:00:00Z"}',
]
WINDOW = ["--since", "2026-11-01T00:00:00Z", "--until", "2026-11-08T00:00:00Z"]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(LINES) + "\n\n")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = 0
    try:
        main(["dora", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run([*args, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_json_keys_and_figures(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["--records", str(ledger), *WINDOW], capsys)
    assert list(data) == KEYS
    assert data["deployments"] == 5 and data["failures"] == 2
    assert data["window_days"] == 7.0
    assert data["deployment_frequency_per_day"] == pytest.approx(3 / 7)
    assert data["lead_time_hours_median"] == pytest.approx(2.0)  # 2, 4, 1 hours
    assert data["change_failure_rate"] == pytest.approx(0.4)
    assert data["time_to_restore_minutes_mean"] == pytest.approx(30.0)
    # 30 min + 2 days (shop/dev down from 11-06 to the window's end) over 2 series
    downtime = 30 + 2 * 24 * 60
    assert data["availability_percent"] == pytest.approx(100 * (1 - downtime / (7 * 1440 * 2)))
    assert data["bands"] == {
        "deployment_frequency": "high",
        "lead_time": "elite",
        "change_failure_rate": "low",
        "time_to_restore": "elite",
    }


def test_filters_and_empty_window(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = run_json(["--records", str(ledger), *WINDOW, "--app", "shop"], capsys)
    assert (shop["deployments"], shop["failures"]) == (2, 1)
    prod = run_json(["--records", str(ledger), *WINDOW, "--environment", "prod"], capsys)
    assert prod["deployments"] == 3
    empty = run_json(
        ["--records", str(ledger), "--since", "2025-01-01", "--until", "2025-01-31"], capsys
    )
    assert list(empty) == KEYS
    assert empty["deployments"] == 0 and empty["platform_score"] is None
    assert empty["window_days"] == 30.0


def test_default_window_is_30_days_until_now(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(["--records", str(ledger)], capsys)
    assert data["window_days"] == pytest.approx(30.0)


def test_by_app_environment_and_cause(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_app = run_json(["--records", str(ledger), *WINDOW, "--by", "app"], capsys)
    assert by_app["by"] == "app"
    assert list(by_app["groups"]) == ["cart", "shop"]
    assert list(by_app["groups"]["cart"]) == KEYS
    assert by_app["total"]["deployments"] == 5
    by_env = run_json(["--records", str(ledger), *WINDOW, "--by", "environment"], capsys)
    assert list(by_env["groups"]) == ["dev", "prod"]
    causes = run_json(["--records", str(ledger), *WINDOW, "--by", "cause"], capsys)
    assert causes["failures"] == 2
    assert causes["groups"] == {
        "sync": {"failures": 1, "share": 0.5},
        "verify": {"failures": 1, "share": 0.5},
    }


def test_compare_two_windows(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        ["--records", str(ledger), *WINDOW, "--compare", "2026-10-15", "2026-11-01"], capsys
    )
    assert set(data) == {"before", "after", "change", "windows"}
    assert data["windows"]["before"] == {
        "since": "2026-10-15T00:00:00Z",
        "until": "2026-11-01T00:00:00Z",
    }
    assert data["before"]["deployments"] == 1 and data["after"]["deployments"] == 5
    assert data["change"]["deployments"] == 4.0
    assert data["change"]["change_failure_rate"] == pytest.approx(0.4)
    assert list(data["after"]) == KEYS


def test_tables(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--records", str(ledger), *WINDOW], capsys)
    assert code == 0
    for text in ("deployment frequency", "0.43 /day", "high", "40.0 %", "platform score"):
        assert text in out
    code, out, _ = run(["--records", str(ledger), *WINDOW, "--by", "cause"], capsys)
    assert code == 0 and "verify" in out and "50.0 %" in out
    code, out, _ = run(
        ["--records", str(ledger), *WINDOW, "--compare", "2026-10-15", "2026-11-01"], capsys
    )
    assert code == 0 and "before" in out and "+4 " in out and "+40.0 pt" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--records", "{missing}"], "no such file"),
        (["--records", "{ledger}", "--since", "yesterday"], "--since: not an ISO 8601 time"),
        (["--records", "{ledger}", "--until", "2026-13-01"], "--until: not an ISO 8601 time"),
        (
            ["--records", "{ledger}", "--since", "2026-11-08", "--until", "2026-11-01"],
            "must be before",
        ),
        (
            ["--records", "{ledger}", "--since", "2026-11-01", "--until", "2026-11-01"],
            "must be before",
        ),
        (["--records", "{bad}"], "line 3"),
        (["--records", "{ledger}", "--by", "team"], "--by must be one of"),
        (
            ["--records", "{ledger}", "--by", "app", "--compare", "2026-10-01", "2026-11-01"],
            "cannot be combined",
        ),
        (["--records", "{ledger}", "--compare", "2026-11-01", "2026-10-01"], "must be before"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, ledger: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(LINES[0] + "\n\n" + '{"app": "cart", "outcome": "maybe"}\n')
    paths = {"missing": tmp_path / "nope.jsonl", "ledger": ledger, "bad": bad}
    argv = [a.format(**paths) for a in args]
    result = subprocess.run(
        [*SHIPYARD, "dora", *argv], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_prefect_api_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    result = subprocess.run(
        [*SHIPYARD, "dora", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
