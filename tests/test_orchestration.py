"""The Dagster code location: its graph, its schedules, and whole runs of it in-process against
the loopback replay of recorded CoinGecko bodies and the real Postgres."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CRYPTOLAKE_REQUIRE_DAGSTER") != "1":
    pytest.importorskip("dagster", reason="needs the extra: uv sync --extra dagster")

import dagster as dg

from cryptolake import pipeline
from cryptolake.catalog import latest_snapshot, open_lake
from cryptolake.checkdefs import check_defs
from cryptolake.datasets import DATASETS, SNAPSHOT_DATASETS
from cryptolake.errors import ApiError, CommitConflict, ConfigError, LockError, PublishError
from cryptolake.gold import GOLD_MODELS
from cryptolake.orchestration import ASSETS, CryptolakeResource, defs, steps
from cryptolake.orchestration.schedules import daily, every_6_hours
from cryptolake.orchestration.specs import CHECK_SPECS
from cryptolake.orchestration.steps import (
    BUSY_RETRY,
    POOL,
    SERVICE_RETRY,
    LogProgress,
    Retry,
    retry_for,
)
from cryptolake.progress import Progress
from cryptolake.replay import ReplayData, ReplayServer, sample_data
from cryptolake.settings import Settings

from .published import fetch


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))


def test_definitions_load_with_the_whole_lake_as_assets() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == (
        {f"bronze/{d.name}" for d in DATASETS}
        | {f"silver/{d.silver.table}" for d in DATASETS}
        | {f"gold/{m}" for m in GOLD_MODELS}
        | {f"postgres/{m}" for m in GOLD_MODELS}
        | {"postgres/staging_market_snapshots", "postgres/staging_coin_history_daily"}
    )

    def parents(path: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(key(path)).parent_keys}

    # Lineage read from the declarations and the SQL.
    assert parents("silver/market_snapshots") == {"bronze/coins_markets"}
    assert parents("bronze/coin_market_chart") == {"bronze/coins_markets"}
    assert parents("gold/coin_daily") == {
        "silver/market_snapshots",
        "silver/coin_history_daily",
        "silver/coin_ohlc_4h",
    }
    # A macro's reads count: the mart converts to USD with /global's totals.
    assert "silver/global_snapshots" in parents("gold/crypto_analytics_mart")
    assert "gold/coin_daily" in parents("gold/crypto_analytics_mart")
    assert parents("postgres/staging_market_snapshots") == {"silver/market_snapshots"}
    assert parents("postgres/coin_daily") == {"gold/coin_daily"}
    # Landed by `backfill --with-ohlc` only: in the graph, not run by it.
    assert not graph.get(key("bronze/coin_ohlc")).is_materializable
    # Every SQL check is an asset check of the table it is about; blocking ones block.
    checks = {(c.asset_key.to_user_string(), c.name): c.blocking for c in CHECK_SPECS}
    assert len(checks) == len(check_defs())
    assert checks[("gold/coin_daily", "coin_daily_key_unique")] is True
    assert checks[("silver/market_snapshots", "market_snapshots_non_negative")] is False
    assert checks[("gold/crypto_analytics_mart", "latest_snapshot_fresh")] is False
    assert {c.name for c in graph.asset_check_keys} == {c.name for c in check_defs()}


def test_schedules_run_snapshots_every_6_hours_and_history_daily_in_utc() -> None:
    assert (every_6_hours.cron_schedule, every_6_hours.execution_timezone) == ("0 */6 * * *", "UTC")
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 0 * * *", "UTC")
    graph = defs.resolve_asset_graph()

    def selected(job: str) -> set[str]:
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        return {k.to_user_string() for k in keys if graph.get(k).is_materializable}

    snapshot, history = selected("snapshot_job"), selected("history_job")
    assert {f"bronze/{d.name}" for d in SNAPSHOT_DATASETS} <= snapshot
    assert "bronze/coin_market_chart" not in snapshot
    assert "bronze/coin_market_chart" in history and "bronze/coins_markets" not in history
    for job in (snapshot, history):
        assert {"gold/crypto_analytics_mart", "postgres/staging_market_snapshots"} <= job
    assert {s.job_name for s in (every_6_hours, daily)} == {"snapshot_job", "history_job"}
    # Every step is in the lake's pool: with a limit of 1, runs queue for the lake.
    steps = [a for a in ASSETS if isinstance(a, dg.AssetsDefinition)]
    assert len(steps) == 4 and {a.op.pool for a in steps} == {POOL}


def test_the_resource_reads_the_cli_environment_and_keeps_secrets_out_of_its_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRYPTOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CRYPTOLAKE_API_KEY", "CG-sekrit-key")
    monkeypatch.setenv("CRYPTOLAKE_TOP", "all")
    resource = CryptolakeResource(postgres_dsn="postgresql://u:pw-sekrit@db/x", top="100")
    settings = resource.settings()
    assert settings.lake == tmp_path / "lake" and settings.top == 100  # field over environment
    assert settings.api_key is not None and settings.api_key.reveal() == "CG-sekrit-key"
    assert settings.postgres_dsn is not None
    assert "sekrit" not in repr(settings)
    # An error names the field the user set, not a CLI flag.
    with pytest.raises(ConfigError, match=r"^CryptolakeResource.top must be a number of coins"):
        CryptolakeResource(top="lots").settings()
    # The UI shows the resource's config: a secret left to the environment is not in it.
    assert "sekrit" not in json.dumps(CryptolakeResource(top="100").model_dump())


def test_transient_errors_are_retried_and_others_fail_the_step() -> None:
    assert retry_for(LockError("busy")) == BUSY_RETRY
    assert retry_for(CommitConflict("raced")) == BUSY_RETRY
    assert retry_for(ApiError("429", transient=True)) == SERVICE_RETRY
    assert retry_for(ApiError("401", transient=False)) is None
    assert retry_for(PublishError("postgres down", transient=True)) == SERVICE_RETRY
    assert retry_for(PublishError("permission denied")) is None
    assert retry_for(ConfigError("bad")) is None
    # Another run holding the lake is waited for (up to half an hour), the API a little.
    assert BUSY_RETRY.times * BUSY_RETRY.wait_seconds == 1800
    assert SERVICE_RETRY.times * SERVICE_RETRY.wait_seconds == 120


def test_progress_goes_to_the_step_log_a_line_per_task_every_ten_seconds() -> None:
    lines: list[str] = []

    class Log:
        def info(self, message: str) -> None:
            lines.append(message)

    now = [0.0]
    progress = LogProgress(Log(), clock=lambda: now[0])
    for page in range(1, 6):
        now[0] = page * 4.0
        progress(Progress("ingest", "coins", page * 250, 1_250, f"page {page}"))
    assert lines == [
        "ingest coins: 250 of 1,250 page 1",
        "ingest coins: 1,000 of 1,250 page 4",
        "ingest coins: 1,250 of 1,250 page 5",
    ]


@pytest.fixture
def code_location_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> Iterator[Path]:
    """The CLI's environment for a lake in tmp_path, publishing to a fresh schema."""
    lake = tmp_path / "lake"
    monkeypatch.setenv("CRYPTOLAKE_LAKE", str(lake))
    monkeypatch.setenv("CRYPTOLAKE_RATE", "60000")
    monkeypatch.setenv("CRYPTOLAKE_TOP", "100")
    monkeypatch.setenv("CRYPTOLAKE_HISTORY_BUDGET", "5")
    monkeypatch.setenv("CRYPTOLAKE_FRESHNESS_HOURS", str(1_000_000))
    monkeypatch.setenv("CRYPTOLAKE_POSTGRES_DSN", pg_dsn)
    monkeypatch.setenv("CRYPTOLAKE_PG_SCHEMA", pg_schema)
    yield lake


def materialize(api_url: str, monkeypatch: pytest.MonkeyPatch) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("CRYPTOLAKE_API_URL", api_url)
    return dg.materialize(
        ASSETS,
        resources={"cryptolake": CryptolakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialized_keys(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key
    }


def metadata(result: dg.ExecuteInProcessResult, path: str) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key(path)]
    materialization = event.step_materialization_data.materialization
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.mark.postgres
def test_the_whole_graph_materializes_into_the_lake_and_postgres(
    code_location_env: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str, pg_schema: str
) -> None:
    with ReplayServer(sample_data()) as replay:
        result = materialize(replay.api_url, monkeypatch)
        assert result.success
        requests = replay.requests
    assert sum("/coins/markets" in r for r in requests) == 1
    assert sum("/market_chart" in r for r in requests) == 5  # the history budget

    materialized = materialized_keys(result)
    assert len(materialized) == 3 + 1 + len(DATASETS) + 2 * len(GOLD_MODELS) + 2
    markets = metadata(result, "bronze/coins_markets")
    assert markets["records"] == 100 and markets["requests"] == 1
    assert markets["bronze_run_id"] in markets["manifest"]
    assert Path(markets["manifest"]).is_relative_to(code_location_env)
    assert metadata(result, "bronze/coin_market_chart")["requests"] == 5
    assert metadata(result, "silver/market_snapshots")["rows_added"] == 100

    settings = Settings.resolve(env=os.environ)
    with open_lake(settings, read_only=True) as con:
        gold = latest_snapshot(con, stage="gold")
        rows = {
            m: int(con.execute(f"select count(*) from gold.{m}").fetchone()[0])  # type: ignore[index]
            for m in GOLD_MODELS
        }
    assert gold is not None
    for model in GOLD_MODELS:
        shown = metadata(result, f"gold/{model}")
        assert shown["lake_snapshot_id"] == gold.snapshot_id
        assert shown["dagster/row_count"] == rows[model]
        published = metadata(result, f"postgres/{model}")
        assert published["dagster/row_count"] == rows[model]
        assert fetch(pg_dsn, f"select count(*) from {pg_schema}.{model}") == [(rows[model],)]
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.staging_market_snapshots") == [(100,)]
    # Every check ran and passed, on the asset it is about.
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {c.name for c in check_defs()}
    assert all(e.passed for e in evaluations)
    # The lake says who committed: this Dagster run.
    assert gold.extra.get("run_id") == f"dagster-{result.run_id[:8]}"

    # Nothing new: a second run lands a new snapshot and publishes it.
    with ReplayServer(sample_data()) as replay:
        again = materialize(replay.api_url, monkeypatch)
    assert again.success
    assert metadata(again, "silver/market_snapshots")["rows_added"] == 100
    # The history bodies the first run landed are a bronze run of their own, which the next
    # ingest's sweep of orphans recognises: nothing of the lake was set aside.
    assert not list((code_location_env / "quarantine").rglob("*.json"))
    assert len(list((code_location_env / "bronze" / "coin_market_chart").rglob("*.json"))) == 1
    assert fetch(pg_dsn, f"select count(*) from {pg_schema}.staging_market_snapshots") == [(200,)]


def in_eur_without_its_total(data: ReplayData) -> ReplayData:
    """The recorded bodies served for vs_currency=eur, /global less its EUR total: the lake
    has no rate from the quote currency to USD, so the mart's USD market caps are unknown."""
    body = json.loads(data.bodies["/global"])
    del body["data"]["total_market_cap"]["eur"]
    return ReplayData(
        markets=data.markets,
        bodies={**data.bodies, "/global": json.dumps(body).encode()},
        vs_currency="eur",
    )


@pytest.mark.postgres
def test_a_failing_check_fails_the_run_and_blocks_publish(
    code_location_env: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str, pg_schema: str
) -> None:
    monkeypatch.setenv("CRYPTOLAKE_VS_CURRENCY", "eur")
    with ReplayServer(in_eur_without_its_total(sample_data())) as replay:
        result = materialize(replay.api_url, monkeypatch)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name) for e in failed] == [
        ("gold/crypto_analytics_mart", "crypto_analytics_mart_market_cap_usd_known")
    ]
    assert failed[0].metadata["failing_rows"].value == 50  # the mart: the top 50
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "transform"
    assert "data-quality check(s) failed" in str(failure.event_specific_data)
    materialized = materialized_keys(result)
    # Bronze and silver landed; gold kept out by its audit; Postgres never written.
    assert "silver/market_snapshots" in materialized
    assert not any(k.startswith(("gold/", "postgres/")) for k in materialized)
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert started == ["ingest", "history", "transform"]
    assert [e.step_key for e in result.get_step_failure_events()] == ["transform"]
    assert fetch(
        pg_dsn,
        f"select count(*) from information_schema.tables where table_schema = '{pg_schema}'",
    ) == [(0,)]


def test_a_step_fails_with_our_one_line_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRYPTOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CRYPTOLAKE_TOP", "lots")
    result = dg.materialize(
        ASSETS,
        resources={"cryptolake": CryptolakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=["bronze/coins_markets", "bronze/global", "bronze/coins_categories"],
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    assert error.message.strip().endswith(
        "CRYPTOLAKE_TOP must be a number of coins or all, got 'lots'."
    )
    assert "Traceback" not in error.message and error.cause is None


def test_history_with_the_api_down_is_retried_then_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # History is a job of its own here: a run that made no request must not look like one
    # that did (in `cryptolake run` the stage is skipped, so the snapshot still lands).
    monkeypatch.setenv("CRYPTOLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CRYPTOLAKE_TOP", "100")

    with ReplayServer(sample_data()) as replay:  # a snapshot: the top coins to ask about
        monkeypatch.setenv("CRYPTOLAKE_API_URL", replay.api_url)
        landed = pipeline.run(Settings.resolve(env=os.environ), stages=("ingest", "transform"))
        assert landed.status == "success"
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    monkeypatch.setattr(steps, "SERVICE_RETRY", Retry(times=1, wait_seconds=0))
    monkeypatch.setenv("CRYPTOLAKE_API_URL", f"http://127.0.0.1:{port}/api/v3")
    result = dg.materialize(
        ASSETS,
        resources={"cryptolake": CryptolakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=["bronze/coin_market_chart"],
    )
    assert not result.success
    assert not materialized_keys(result)
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "history"]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None and f"Cannot reach CoinGecko at 127.0.0.1:{port}" in error.message
