"""What must hold after any fault, once the next plain run has recovered (issue 15).

Nothing acknowledged is lost: every complete run manifest in `bronze/_runs` (what ingest and
backfill acknowledge) is in silver. Nothing is doubled: each silver key once, each run once.
Gold was built from silver's latest snapshot. Postgres, after a successful publish, holds each
(snapshot, coin) once and the same snapshots as silver. No body a manifest does not list is
visible to the raw `read_json` glob the README shows. And `cryptolake verify` agrees.

These are oracles: they read the lake's files, its DuckLake tables and Postgres directly, and
of the product's bookkeeping trust only the manifests (bronze is the source of truth).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from contextlib import closing
from pathlib import Path

import duckdb

from cryptolake.bronze import Manifest, read_manifests
from cryptolake.datasets import COINS_MARKETS, DATASETS
from cryptolake.duck import quote_literal
from cryptolake.lake import LakePaths
from cryptolake.staging import STAGING

from ..clis import run_cli
from ..lakes import lake_db
from ..published import fetch

# Run id -> (rows, distinct coins) of silver.market_snapshots or Postgres staging.
RowsPerRun = dict[str, tuple[int, int]]


def acknowledged(lake: Path) -> dict[str, Manifest]:
    """The runs the lake acknowledged: its complete manifests, by run id."""
    return {m.run_id: m for m in read_manifests(LakePaths.at(lake))}


def coins_landed(manifest: Manifest) -> int:
    """The /coins/markets rows a snapshot run landed: records less those trimmed to --top."""
    return sum(
        f.records - len(f.trimmed_ids) for f in manifest.files if f.dataset == COINS_MARKETS.name
    )


def pairs(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, int]:
    return {str(key): int(n) for key, n in con.execute(sql).fetchall()}


def rows_per_run(con: duckdb.DuckDBPyConnection) -> RowsPerRun:
    rows = con.execute(
        "select run_id, count(*), count(distinct coin_id) from silver.market_snapshots "
        "group by run_id"
    ).fetchall()
    return {str(run_id): (int(n), int(coins)) for run_id, n, coins in rows}


def silver_rows_per_run(lake: Path) -> RowsPerRun:
    """Run id -> (rows, distinct coins) in the lake's silver.market_snapshots."""
    with closing(lake_db(lake)) as con:
        return rows_per_run(con)


def doubled_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Silver table -> how many of its keys hold more than one row (each must hold one)."""
    doubled = {}
    for dataset in DATASETS:
        model = dataset.silver
        row = con.execute(
            f"select count(*) from (select {', '.join(model.key)} from silver.{model.table} "
            "group by all having count(*) > 1)"
        ).fetchone()
        doubled[model.table] = int(row[0]) if row else -1
    twice = pairs(
        con, "select run_id, count(*) from silver.processed_runs group by 1 having count(*) > 1"
    )
    doubled["processed_runs"] = len(twice)
    return doubled


def in_silver_once(con: duckdb.DuckDBPyConnection, manifests: Iterable[Manifest]) -> None:
    processed = pairs(con, "select run_id, count(*) from silver.processed_runs group by 1")
    per_run = rows_per_run(con)
    globals_per_run = pairs(con, "select run_id, count(*) from silver.global_snapshots group by 1")
    doubled = doubled_keys(con)
    expected = list(manifests)
    missing = [m.run_id for m in expected if processed.get(m.run_id) != 1]
    assert missing == [], f"acknowledged runs not processed exactly once: {missing}"
    for manifest in expected:
        if manifest.kind != "snapshot":
            continue
        coins = coins_landed(manifest)
        assert per_run.get(manifest.run_id) == (coins, coins), (
            f"run {manifest.run_id}: silver holds {per_run.get(manifest.run_id)} "
            f"(rows, coins), its manifest {coins} coins"
        )
        assert globals_per_run.get(manifest.run_id) == 1, manifest.run_id
    assert set(doubled.values()) == {0}, f"silver keys held twice: {doubled}"


def assert_in_silver_once(lake: Path, manifests: Iterable[Manifest]) -> None:
    """Each of these runs is in silver exactly once: processed once, every coin it landed
    once, its /global once; and no silver key anywhere holds two rows."""
    with closing(lake_db(lake)) as con:
        in_silver_once(con, manifests)


def latest_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, int | None]:
    """The latest snapshot_at (epoch microseconds) of silver and of each gold table with one."""
    row = con.execute(
        "select (select epoch_us(max(snapshot_at)) from silver.market_snapshots), "
        "(select epoch_us(max(snapshot_at)) from gold.crypto_analytics_mart), "
        "(select epoch_us(max(snapshot_at)) from gold.market_segment_analysis), "
        "(select epoch_us(max(last_snapshot_at)) from gold.coin_daily)"
    ).fetchone()
    assert row is not None
    silver, mart, segments, daily = row
    return {"silver": silver, "mart": mart, "segments": segments, "coin_daily": daily}


def gold_matches_silver(con: duckdb.DuckDBPyConnection) -> None:
    latest = latest_snapshots(con)
    assert latest["silver"] is not None, "silver is empty"
    assert set(latest.values()) == {latest["silver"]}, f"gold is not silver's latest: {latest}"


def assert_gold_matches_silver(lake: Path) -> None:
    """Gold's latest snapshot is silver's: gold was rebuilt after silver's last commit."""
    with closing(lake_db(lake)) as con:
        gold_matches_silver(con)


def orphan_bodies(lake: Path) -> list[str]:
    """Bodies in dataset folders (`bronze/<dataset>/*/*.json`) that no complete manifest
    lists, relative to the lake: what a raw glob must not show after a recovery."""
    root = Path(lake)
    listed = {f.path for m in acknowledged(lake).values() for f in m.files}
    bodies = {
        str(p.relative_to(root))
        for dataset in DATASETS
        for p in (root / "bronze" / dataset.name).glob("*/*.json")
    }
    return sorted(bodies - listed)


def raw_glob_rows(lake: Path) -> int:
    """Rows of the README's raw glob over bronze/coins_markets, read with DuckDB."""
    glob = f"{Path(lake) / 'bronze' / COINS_MARKETS.name}/*/*.json"
    with closing(duckdb.connect()) as con:
        row = con.execute(
            f"select count(*) from read_json({quote_literal(glob)}, "
            "hive_partitioning = true, format = 'array')"
        ).fetchone()
    return int(row[0]) if row else 0


def assert_raw_glob_matches_manifests(lake: Path) -> None:
    """The raw glob shows the rows of complete manifests and nothing else (no orphan)."""
    landed = sum(
        f.records
        for m in acknowledged(lake).values()
        for f in m.files
        if f.dataset == COINS_MARKETS.name
    )
    assert (raw_glob_rows(lake), orphan_bodies(lake)) == (landed, [])


def staging_rows_per_run(dsn: str, schema: str) -> RowsPerRun:
    """Run id -> (rows, distinct coins) in Postgres staging."""
    rows = fetch(
        dsn,
        f"select run_id, count(*), count(distinct coin_id) from {schema}.{STAGING} group by 1",
    )
    return {str(run_id): (int(n), int(coins)) for run_id, n, coins in rows}


def postgres_matches_silver(con: duckdb.DuckDBPyConnection, dsn: str, schema: str) -> None:
    ((rows, keys, mart_latest),) = fetch(
        dsn,
        f"select (select count(*) from {schema}.{STAGING}), "
        f"(select count(*) from (select distinct coin_id, snapshot_at from {schema}.{STAGING}) "
        "as k), (select (extract(epoch from max(snapshot_at)) * 1000000)::bigint "
        f"from {schema}.crypto_analytics_mart)",
    )
    assert rows == keys, f"staging holds {rows - keys} (snapshot, coin) rows twice"
    assert staging_rows_per_run(dsn, schema) == rows_per_run(con)
    assert mart_latest == latest_snapshots(con)["silver"]


def assert_postgres_matches_silver(lake: Path, dsn: str, schema: str) -> None:
    """After a successful publish: staging holds each (snapshot, coin) once, the runs silver
    holds with the same coins each, and the analytics mart shows silver's latest snapshot."""
    with closing(lake_db(lake)) as con:
        postgres_matches_silver(con, dsn, schema)


def assert_lake_verifies(lake: Path, *, postgres: tuple[str, str] | None = None) -> None:
    """`cryptolake verify --json --lake <lake>` finds nothing to repair (exit 0).

    A process of its own, as a user runs it (and safe from several threads at once).

    With `postgres` (dsn, schema), Postgres is named as every command reads it, by
    CRYPTOLAKE_POSTGRES_DSN and CRYPTOLAKE_PG_SCHEMA, so verify also compares its staging.
    """
    env = {}
    if postgres is not None:
        env = {"CRYPTOLAKE_POSTGRES_DSN": postgres[0], "CRYPTOLAKE_PG_SCHEMA": postgres[1]}
    done = run_cli("verify", "--json", "--lake", str(lake), env=env)
    assert done.returncode != 2, f"`cryptolake verify` is missing or refused usage: {done.stderr}"
    assert done.returncode == 0, f"verify found something to repair: {done.stdout}{done.stderr}"
    assert json.loads(done.stdout)["consistent"] is True, done.stdout


def assert_invariants(
    lake: Path, acknowledged_before: Collection[str], *, postgres: tuple[str, str] | None = None
) -> None:
    """Everything above, on a lake after a fault and the run that recovered from it.

    `acknowledged_before`: the run ids of the complete manifests before the fault: none may
    have gone missing. `verify` comes last, so its verdict never hides the oracles'.
    """
    now = acknowledged(lake)
    lost = sorted(set(acknowledged_before) - set(now))
    assert lost == [], f"acknowledged runs lost their manifest: {lost}"
    with closing(lake_db(lake)) as con:
        in_silver_once(con, now.values())
        gold_matches_silver(con)
        if postgres is not None:
            postgres_matches_silver(con, *postgres)
    assert_raw_glob_matches_manifests(lake)
    assert_lake_verifies(lake, postgres=postgres)
