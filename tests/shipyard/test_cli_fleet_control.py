"""``shipyard fleet pause|resume|skip``: bad input is one line on stderr and exit 2,
before any Prefect call (the live behaviour is in tests/flows/test_fleet_deliver.py)."""

from __future__ import annotations

import pytest

from shipyard.cli.main import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pause", "--run", "nope"], "--run 'nope' is not a flow run id (a UUID)"),
        (["resume"], "--run '' is not a flow run id (a UUID)"),
        (
            ["skip", "--run", "0b4e8f9c-5f55-4a3f-9e8c-1d2a3b4c5d6e", "--cluster", "Bad!"],
            "--cluster 'Bad!' is not a cluster name",
        ),
        (
            ["skip", "--run", "0b4e8f9c-5f55-4a3f-9e8c-1d2a3b4c5d6e"],
            "--cluster '' is not a cluster name",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fleet", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"shipyard: {message}"]


def test_no_prefect_api_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with pytest.raises(SystemExit) as exc:
        main(["fleet", "pause", "--run", "0b4e8f9c-5f55-4a3f-9e8c-1d2a3b4c5d6e"])
    assert exc.value.code == 2
    assert "no Prefect API answers" in capsys.readouterr().err
