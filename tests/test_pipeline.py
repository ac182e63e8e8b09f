"""`run` end to end: loopback API replaying fixtures, the real lake, the real Postgres."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.errors import CheckError, LockError, PublishError, TransformError
from cryptolake.history import recent_runs
from cryptolake.lake import LakePaths
from cryptolake.lakedb import query
from cryptolake.lock import LakeLock
from cryptolake.pipeline import STAGES, parse_stages, run
from cryptolake.progress import Progress
from cryptolake.replay import ReplayServer
from cryptolake.secret import Secret
from cryptolake.settings import Settings
from cryptolake.status import lake_status

from .conftest import MARKETS, replay_data


@pytest.fixture
def api() -> Iterator[ReplayServer]:
    """The recorded 2023 top 100 with its /global and categories: a consistent snapshot."""
    with ReplayServer(replay_data(MARKETS)) as server:
        yield server


def make_settings(
    lake: Path, api: ReplayServer, *, history: bool = False, **extra: Any
) -> Settings:
    """Settings for the replay; its history stage is off (budget 0) unless `history`: the
    replay serves no history, so all the stage would do is spend its budget on 404s."""
    if not history:
        extra.setdefault("history_budget", 0)
    return Settings.resolve(
        env={}, lake=lake, api_url=api.api_url, rate=60_000.0, top=60, per_page=25, **extra
    )


def fail_in(stage: str, error: Exception) -> Any:
    """A progress callback that raises `error` at the first event of `stage`."""

    def callback(event: Progress) -> None:
        if event.stage == stage:
            raise error

    return callback


def pg_count(dsn: str, schema: str, table: str) -> int:
    """Rows in a published table; 0 while the table does not exist (nothing was committed)."""
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("select to_regclass(%s)", [f"{schema}.{table}"]).fetchone()
        if not exists or exists[0] is None:
            return 0
        row = conn.execute(f"select count(*) from {schema}.{table}").fetchone()
    return int(row[0]) if row else 0


def test_parse_stages_orders_and_validates() -> None:
    assert parse_stages("publish,ingest") == ("ingest", "publish")
    assert parse_stages(STAGES) == STAGES
    with pytest.raises(Exception, match="--stages"):
        parse_stages("ingest,bake")


def test_run_without_postgres_skips_publish_and_says_how(lake: Path, api: ReplayServer) -> None:
    result = run(make_settings(lake, api, history=True))
    assert result.status == "success"
    by_stage = {s.stage: s for s in result.stages}
    assert [s.status for s in result.stages] == ["ok", "ok", "ok", "ok", "skipped"]
    assert by_stage["ingest"].rows == {"coins_markets": 60, "global": 1, "coins_categories": 90}
    assert by_stage["transform"].rows["silver.market_snapshots"] == 60
    assert by_stage["transform"].rows["gold.crypto_analytics_mart"] == 50
    assert "CRYPTOLAKE_POSTGRES_DSN" in by_stage["publish"].detail
    (record,) = recent_runs(make_settings(lake, api, history=True))
    assert (record.run_id, record.status, record.trigger) == (result.run_id, "success", "manual")
    assert [s["status"] for s in record.stages] == ["ok", "ok", "ok", "ok", "skipped"]


@pytest.mark.postgres
def test_cli_run_json_end_to_end(
    lake: Path, api: ReplayServer, pg_dsn: str, pg_schema: str
) -> None:
    args = ["run", "--lake", str(lake), "--api-url", api.api_url, "--top", "60",
            "--per-page", "25", "--rate", "60000", "--postgres", pg_dsn,
            "--pg-schema", pg_schema, "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # nothing but the JSON document on stdout
    assert set(document) == {
        "run_id", "status", "sample", "started_at", "finished_at", "seconds", "stages", "error",
        "notes",
    }  # fmt: skip
    assert document["status"] == "success" and document["error"] is None
    assert [s["stage"] for s in document["stages"]] == list(STAGES)
    assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in document["stages"])
    publish_rows = document["stages"][STAGES.index("publish")]["rows"]
    assert publish_rows["staging_market_snapshots"] == 60
    assert publish_rows["crypto_analytics_mart"] == 50
    assert pg_count(pg_dsn, pg_schema, "staging_market_snapshots") == 60
    assert pg_count(pg_dsn, pg_schema, "publish_log") == 1
    assert api.requests[0].startswith("/api/v3/coins/markets?")

    again = CliRunner().invoke(app, args)
    second = json.loads(again.stdout)
    assert second["stages"][STAGES.index("publish")]["summary"] == "+60 staging rows, 6 marts"
    assert pg_count(pg_dsn, pg_schema, "staging_market_snapshots") == 120


def test_cli_run_failure_exits_1_with_one_clear_line(lake: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--lake",
            str(lake),
            "--api-url",
            "http://127.0.0.1:1/api/v3",
            "--stages",
            "transform",
        ],  # fmt: skip
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    assert "cryptolake ingest" in result.output  # names the fix: no bronze yet


def test_second_run_while_one_holds_the_lock(lake: Path, api: ReplayServer) -> None:
    settings = make_settings(lake, api)
    with LakeLock(LakePaths.at(lake), run_id="20260101T000000Z-aaaaaa"):
        with pytest.raises(LockError, match="20260101T000000Z-aaaaaa"):
            run(settings)
        result = CliRunner().invoke(app, ["run", "--lake", str(lake), "--stages", "transform"])
        assert result.exit_code == 1 and "busy" in result.output
    assert run(settings).status == "success"  # released


STALLED_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cryptolake.pipeline import run
    from cryptolake.settings import Settings

    lake, api_url, marker = sys.argv[1:]
    settings = Settings.resolve(env={}, lake=lake, api_url=api_url, rate=60000.0, top=60,
                                per_page=25, history_budget=0)

    def stall(event):
        if event.stage == "silver":
            Path(marker).write_text("stalled")
            time.sleep(120)

    run(settings, progress=stall)
    """
)


def test_killed_run_lock_is_taken_over_and_the_next_run_resumes(
    lake: Path, api: ReplayServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED_RUN, str(lake), api.api_url, str(marker)]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(LockError):
            run(make_settings(lake, api), stages=["transform"])
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    resumed = run(make_settings(lake, api), stages=["transform", "check"])
    assert resumed.status == "success"
    assert any("took over the lock" in n for n in resumed.notes)
    assert any("marked 1 interrupted" in n for n in resumed.notes)
    # The killed run's bronze was complete: this run transformed it without fetching again.
    assert resumed.stages[0].rows["silver.market_snapshots"] == 60
    statuses = [r.status for r in recent_runs(make_settings(lake, api))]
    assert statuses == ["success", "killed"]


@pytest.mark.parametrize(
    ("stage", "event_stage", "error"),
    [
        ("ingest", "ingest", None),
        ("transform", "gold", TransformError("injected gold failure")),
        ("transform", "checks", CheckError("injected audit failure")),
        ("publish", "publish", PublishError("injected publish failure")),
    ],
)
@pytest.mark.postgres
def test_resume_after_a_failure_in_each_stage(
    lake: Path,
    api: ReplayServer,
    pg_dsn: str,
    pg_schema: str,
    stage: str,
    event_stage: str,
    error: Exception | None,
) -> None:
    settings = make_settings(lake, api, postgres_dsn=pg_dsn, pg_schema=pg_schema)
    if error is None:
        # A real failure: the API is unreachable.
        broken = settings.with_(api_url="http://127.0.0.1:1/api/v3", max_attempts=1)
        failed = run(broken)
    else:
        failed = run(settings, progress=fail_in(event_stage, error))
    assert failed.status == "failed"
    by_stage = {s.stage: s.status for s in failed.stages}
    assert by_stage[stage] == "failed"
    later = STAGES[STAGES.index(stage) + 1 :]
    assert all(by_stage[s] == "not_run" for s in later)
    published_before = (
        pg_count(pg_dsn, pg_schema, "staging_market_snapshots") if stage == "publish" else 0
    )
    assert published_before == 0  # nothing reached Postgres from the failed run

    # The next run finishes what the failed one left: after a failed ingest it must fetch;
    # after any later failure the bronze is there, so it does not fetch again.
    requests_before = len(api.requests)
    resumed_stages = STAGES if stage == "ingest" else ("transform", "check", "publish")
    resumed = run(settings, stages=resumed_stages)
    assert resumed.status == "success", resumed.error
    assert (len(api.requests) > requests_before) == (stage == "ingest")
    assert lake_status(settings).silver[0].rows == 60
    assert pg_count(pg_dsn, pg_schema, "staging_market_snapshots") == 60


def test_resume_after_ingest_failure_needs_bronze(lake: Path, api: ReplayServer) -> None:
    """With no bronze at all, transform says what to do instead of failing obscurely."""
    broken = make_settings(lake, api).with_(api_url="http://127.0.0.1:1/api/v3", max_attempts=1)
    assert run(broken).status == "failed"
    result = run(make_settings(lake, api), stages=["transform"])
    assert result.status == "failed" and result.error is not None
    assert "cryptolake ingest" in result.error


def test_should_stop_between_stages(lake: Path, api: ReplayServer) -> None:
    calls = {"n": 0}

    def stop_after_ingest() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    result = run(make_settings(lake, api), should_stop=stop_after_ingest)
    assert result.status == "stopped"
    assert [s.status for s in result.stages] == ["ok", "not_run", "not_run", "not_run", "not_run"]


def test_status_reports_inventory_freshness_and_runs(lake: Path, api: ReplayServer) -> None:
    settings = make_settings(lake, api, history=True)
    run(settings)
    run(settings.with_(api_url="http://127.0.0.1:1/api/v3", max_attempts=1))
    status = lake_status(settings)
    assert (status.complete_runs, status.failed_runs, status.pending_runs) == (1, 1, 0)
    assert {b.dataset: b.files for b in status.bronze} == {
        "coins_markets": 3,
        "global": 1,
        "coins_categories": 1,
        "coin_market_chart": 0,
        "coin_ohlc": 0,
    }
    # The replay has no history: the run's history stage spent its budget on 404s.
    assert (status.history_requests, status.history_not_found) == (0, 20)
    assert [(s.table, s.partitions, s.rows) for s in status.silver] == [
        ("market_snapshots", 1, 60),
        ("global_snapshots", 1, 1),
        ("category_snapshots", 1, 90),
        ("coin_history_daily", 0, 0),
        ("coin_ohlc_4h", 0, 0),
    ]
    assert status.gold["crypto_analytics_mart"] == 50
    assert status.is_fresh and status.age_hours is not None and status.age_hours < 1
    assert [r.status for r in status.runs] == ["failed", "success"]
    assert status.publish is None and not status.publishing

    shown = CliRunner().invoke(app, ["status", "--lake", str(lake)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "1 complete runs, 1 failed" in shown.output and "fresh" in shown.output
    as_json = json.loads(CliRunner().invoke(app, ["status", "--lake", str(lake), "--json"]).stdout)
    assert as_json["silver"]["market_snapshots"]["rows"] == 60
    assert [r["status"] for r in as_json["runs"]] == ["failed", "success"]


def test_secret_dsn_never_in_history_or_output(lake: Path, api: ReplayServer) -> None:
    dsn = "postgresql://postgres:hunter2-pw@127.0.0.1:1/test"
    settings = make_settings(lake, api).with_(postgres_dsn=Secret(dsn))
    result = run(settings)
    assert result.status == "failed" and result.error is not None
    assert "hunter2-pw" not in json.dumps(result.to_dict())
    for path in lake.rglob("*"):
        if path.is_file():
            assert b"hunter2-pw" not in path.read_bytes(), path


def test_stage_commands_respect_the_lake_lock(lake: Path, api: ReplayServer) -> None:
    run(make_settings(lake, api))
    runner = CliRunner()
    with LakeLock(LakePaths.at(lake), run_id="20260101T000000Z-bbbbbb"):
        for args in (
            ["transform"],
            ["ingest", "--sample"],
            ["publish", "--postgres", "postgresql://u@127.0.0.1:1/x"],
        ):
            result = runner.invoke(app, [*args, "--lake", str(lake)], env={"COLUMNS": "200"})
            assert result.exit_code == 1, args
            assert "busy" in result.output and "20260101T000000Z-bbbbbb" in result.output
    assert runner.invoke(app, ["transform", "--lake", str(lake)]).exit_code == 0


def test_meta_runs_view_in_the_lake_database(lake: Path, api: ReplayServer) -> None:
    settings = make_settings(lake, api)
    first = run(settings)
    second = run(settings, stages=["transform"])
    rows = query(settings, "select run_id, status, seconds from meta.runs order by started_at")
    assert rows.column("run_id").to_pylist() == [first.run_id, second.run_id]
    # The view reads the run records live: it shows how the run that built it ended.
    assert rows.column("status").to_pylist() == ["success", "success"]
    assert rows.column("seconds").to_pylist()[0] > 0
