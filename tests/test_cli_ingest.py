"""`cryptolake ingest` through typer's CliRunner: exit codes, summary, one-line errors."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner, Result

from cryptolake.bronze import read_manifests
from cryptolake.cli import app
from cryptolake.lake import LakePaths
from cryptolake.replay import ReplayServer

KEY = "CG-kq9XtT2vB7w1s8Rz4pLm"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # A wide console keeps rich from wrapping tables and messages.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def test_ingest_prints_a_summary_table(replay: ReplayServer, lake: Path) -> None:
    result = invoke(
        "ingest",
        "--lake",
        str(lake),
        "--api-url",
        replay.api_url,
        "--top",
        "120",
        "--per-page",
        "50",
        "--rate",
        "6000",
    )

    assert result.exit_code == 0, result.output
    (manifest,) = read_manifests(LakePaths.at(lake))
    assert f"ingest run {manifest.run_id} (5 requests, 0 retries)" in result.stdout
    rows = {
        m.group(1): (int(m.group(2)), int(m.group(3).replace(",", "")))
        for m in re.finditer(r"│ (\w+)\s*│\s*(\d+) │\s*([\d,]+) │", result.stdout)
    }
    assert rows == {"coins_markets": (3, 120), "global": (1, 1), "coins_categories": (1, 90)}
    assert (manifest.top, manifest.per_page, manifest.source) == (120, 50, "api")
    assert len(replay.requests) == 5


def test_environment_settings_apply_and_flags_win(replay: ReplayServer, lake: Path) -> None:
    env = {
        "CRYPTOLAKE_LAKE": str(lake),
        "CRYPTOLAKE_API_URL": replay.api_url,
        "CRYPTOLAKE_TOP": "60",
        "CRYPTOLAKE_RATE": "6000",
    }

    result = invoke("ingest", "--top", "30", "--per-page", "25", env=env)

    assert result.exit_code == 0, result.output
    (manifest,) = read_manifests(LakePaths.at(lake))
    assert (manifest.top, manifest.per_page, manifest.api_url) == (30, 25, replay.api_url)
    assert sum(len(f.trimmed_ids) for f in manifest.files) == 20  # 2 pages of 25, top 30


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--top", "many"], 2, "Invalid value for '--top'"),
        (["--per-page", "500"], 1, "error: --per-page must be between 1 and 250, got 500."),
        (["--api-plan", "gold"], 1, "error: --api-plan must be 'demo' or 'pro', got 'gold'."),
        (["--vs-currency", "US Dollar"], 1, "error: --vs-currency must be a CoinGecko currency"),
    ],
)
def test_a_wrong_flag_value_fails_before_any_request(
    replay: ReplayServer, lake: Path, args: list[str], code: int, message: str
) -> None:
    result = invoke("ingest", "--lake", str(lake), "--api-url", replay.api_url, *args)

    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert replay.requests == []
    assert list(lake.iterdir()) == []


def test_a_rejected_key_is_one_clear_error_line(httpserver: HTTPServer, lake: Path) -> None:
    httpserver.expect_request("/api/v3/coins/markets").respond_with_data(
        b'{"status":{"error_code":10002,"error_message":"API Key Missing"}}',
        status=401,
        content_type="application/json",
    )

    result = invoke(
        "ingest",
        "--lake",
        str(lake),
        "--api-url",
        httpserver.url_for("/api/v3"),
        env={"CRYPTOLAKE_API_KEY": KEY},
    )

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: CoinGecko rejected the API key for /coins/markets (HTTP 401, code 10002: API Key "
        "Missing). Check CRYPTOLAKE_API_KEY and CRYPTOLAKE_API_PLAN (demo keys go to "
        "api.coingecko.com, pro keys to pro-api.coingecko.com), or unset CRYPTOLAKE_API_KEY to "
        "use the keyless API."
    ]
    assert "Traceback" not in result.output
    assert KEY not in result.output
    assert len(httpserver.log) == 1
    ((request, _),) = httpserver.log
    assert request.headers["x-cg-demo-api-key"] == KEY
    (manifest,) = read_manifests(LakePaths.at(lake), status="failed")
    assert manifest.keyed is True
    for path in lake.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes()


def test_sample_runs_offline_and_says_it_is_sample_data(lake: Path) -> None:
    offline = {"CRYPTOLAKE_API_URL": f"http://127.0.0.1:{closed_port()}/api/v3"}

    result = invoke("ingest", "--sample", "--lake", str(lake), env=offline)

    assert result.exit_code == 0, result.output
    assert (
        "SAMPLE DATA: replaying recorded CoinGecko responses bundled with cryptolake, "
        "not live prices." in result.stderr
    )
    assert "coins_markets" in result.stdout
    (manifest,) = read_manifests(LakePaths.at(lake))
    assert manifest.source == "sample"
    assert sum(f.records for f in manifest.files if f.dataset == "coins_markets") == 100
    assert "note: The API lists 100 coins, fewer than --top 250" in result.stderr
