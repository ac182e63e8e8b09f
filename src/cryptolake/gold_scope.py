"""What a gold build must redo, found without reading more than it needs.

The currency to build for, the latest snapshot (market and categories) as literals for
partition pruning, the first day `coin_daily` recomputes (from DuckLake's change feeds since
the last build, SQLMesh's incremental by time range), the first day `meta.snapshots` is redone
from, and the latest days in `gold.coin_daily`. Each reads a partition or a small table, not
a year of silver: on object storage every file read is round trips.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from .catalog import latest_snapshot
from .errors import LakeError

EVERYTHING = date(1900, 1, 1)  # `coin_daily_from` for a whole rebuild


def resolve_currency(con: duckdb.DuckDBPyConnection, asked: str | None) -> str:
    """The currency to build gold for: `asked` if the lake holds it, else the latest one's.

    Raises LakeError naming the currencies the lake holds when it holds none or not `asked`.
    """
    if (quick := _latest_snapshot_currency(con, asked)) is not None:
        return quick
    held = con.execute(
        "select vs_currency, count(distinct snapshot_at), max(snapshot_at)::varchar "
        "from silver.market_snapshots group by vs_currency order by max(snapshot_at) desc"
    ).fetchall()
    if not held:
        raise LakeError(
            "silver.market_snapshots is empty; run `cryptolake ingest` then `cryptolake "
            "transform` (or `cryptolake run --sample`)."
        )
    if asked is None:
        return str(held[0][0])
    if asked not in {h[0] for h in held}:
        holds = "; ".join(f"{c}: {n} snapshot(s), latest {at[:16]}" for c, n, at in held)
        raise LakeError(
            f"The lake holds no {asked} snapshots (it holds {holds}); drop --vs-currency "
            f"(or CRYPTOLAKE_VS_CURRENCY) to build gold for {held[0][0]}, or ingest with "
            f"--vs-currency {asked} first."
        )
    return asked


def set_latest_snapshot(con: duckdb.DuckDBPyConnection) -> date:
    """Set `latest_snapshot_at` and `latest_snapshot_date`: the currency's latest snapshot.

    Read from the lake's latest day first (its max comes from DuckLake's statistics, and one
    partition is read), the whole table only when the currency has no rows that day.
    """
    con.execute(
        "set variable latest_snapshot_at = (select max(snapshot_at) from silver.market_snapshots "
        "where vs_currency = getvariable('vs_currency') and snapshot_date = "
        "(select max(snapshot_date) from silver.market_snapshots))"
    )
    found = con.execute("select getvariable('latest_snapshot_at') is not null").fetchone()
    if not (found and found[0]):
        con.execute(
            "set variable latest_snapshot_at = (select max(snapshot_at) "
            "from silver.market_snapshots where vs_currency = getvariable('vs_currency'))"
        )
    con.execute(
        "set variable latest_snapshot_date = cast(getvariable('latest_snapshot_at') as date)"
    )
    # The latest categories snapshot (any run): its max from the statistics, then as literals,
    # so that gold.category_leaderboard reads that one partition, not a year of them.
    con.execute(
        "set variable latest_categories_at = "
        "(select max(snapshot_at) from silver.category_snapshots)"
    )
    con.execute(
        "set variable latest_categories_date = cast(getvariable('latest_categories_at') as date)"
    )
    row = con.execute("select getvariable('latest_snapshot_date')").fetchone()
    return row[0] if row and isinstance(row[0], date) else EVERYTHING


def coin_daily_from(
    con: duckdb.DuckDBPyConnection, fingerprint: str, silver_snapshot: int, *, near: date
) -> date | None:
    """The first day `coin_daily` must recompute, or None to rebuild it whole.

    Incremental only on top of a build with the same models and currency, read from
    DuckLake's change feeds since the snapshot that build read: the earliest day changed in
    silver.market_snapshots, silver.coin_history_daily (both in the gold currency) or
    silver.coin_ohlc_4h. A backfill's year of history recomputes from a year back.
    """
    try:
        row = con.execute(
            "select models_fingerprint, silver_snapshot_id from meta.build"
        ).fetchone()
        built = con.execute("select count(*) from gold.coin_daily").fetchone()
    except duckdb.CatalogException:
        return None  # no gold yet, or one built before these columns existed
    if (
        row is None
        or row[0] != fingerprint
        or not built
        or latest_snapshot(con, stage="gold") is None
    ):
        return None
    since = int(row[1])
    if since >= silver_snapshot:
        return date.max  # silver unchanged: no day to recompute
    feeds = " union all ".join(
        f"select min({column}) as day from ducklake_table_changes("
        f"current_database(), 'silver', '{table}', $since, $until) "
        "where vs_currency = getvariable('vs_currency')"
        for table, column in _COIN_DAILY_INPUTS
    )
    try:
        changed = con.execute(
            f"select min(day) from ({feeds})", {"since": since + 1, "until": silver_snapshot}
        ).fetchone()
        # The lake's latest snapshot day when gold was built: gold's latest day with snapshots.
        latest = max_day(con, "source <> 'history'", near=near)
    except duckdb.Error:
        return None  # the build's snapshot was expired, or an input is missing: rebuild whole
    if changed is None or not isinstance(changed[0], date):
        return date.max
    # A change on day D moves the close (and completeness) of D - 1 too; and a new latest
    # day completes the previous latest one, however far back (runs may have been missed).
    first: date = changed[0] - timedelta(days=1)
    if latest is not None:
        first = min(first, latest)
    return first


# How far back from gold.coin_daily's newest day `max_day` looks first.
RECENT_DAYS = 40


def max_day(con: duckdb.DuckDBPyConnection, where: str, *, near: date) -> date | None:
    """The last day of gold.coin_daily with a row where `where` holds (None: no such row).

    Reads the last weeks' partitions only, when that answers it: `where` is looked for from
    RECENT_DAYS before `near` (the lake's latest snapshot day) on, a literal bound, so
    DuckLake prunes the older files; the whole table only when nothing there matches. On
    object storage a full scan of a year of coin_daily is seconds of reads.
    """
    since = near - timedelta(days=RECENT_DAYS)
    for bound in (f" and day >= date '{since.isoformat()}'", ""):
        row = con.execute(f"select max(day) from gold.coin_daily where ({where}){bound}").fetchone()
        if row and isinstance(row[0], date):
            return row[0]
    return None


# The silver tables `coin_daily` reads, with the column naming the day a row counts for.
_COIN_DAILY_INPUTS = (
    ("market_snapshots", "snapshot_date"),
    ("coin_history_daily", "day"),
    ("coin_ohlc_4h", "day"),
)


def _latest_snapshot_currency(con: duckdb.DuckDBPyConnection, asked: str | None) -> str | None:
    """`resolve_currency`'s answer read cheaply, or None to work it out from all of silver.

    The latest snapshot run (in `asked`, if given) comes from `silver.processed_runs`, one
    row a run; it counts if silver holds rows of it, looked for in its day's partition only.
    (A run whose rows were all set aside by a check leaves the answer to the full query.) On
    object storage this is two small reads instead of a scan of a year of snapshots.
    """
    row = con.execute(
        "select vs_currency, snapshot_at::varchar, cast(snapshot_at as date) "
        "from silver.processed_runs "
        f"where snapshot_at is not null and not regexp_matches(run_id, '{HISTORY_RUN}') "
        "and vs_currency = coalesce(?, vs_currency) order by snapshot_at desc limit 1",
        [asked],
    ).fetchone()
    if row is None or not isinstance(row[2], date):
        return None
    currency, at, day = row
    found = con.execute(
        "select count(*) from (select 1 from silver.market_snapshots "
        f"where snapshot_date = date '{day.isoformat()}' and snapshot_at = ?::timestamptz "
        "and vs_currency = ? limit 1)",
        [at, currency],
    ).fetchone()
    return str(currency) if found and found[0] else None


def snapshots_changed_from(con: duckdb.DuckDBPyConnection, silver_snapshot: int) -> date | None:
    """The first day silver.market_snapshots changed on (any currency) since the snapshot
    the last gold build read; date.max for none; None when `meta.snapshots` must be redone
    whole (no earlier build, or its snapshot expired)."""
    try:
        row = con.execute("select silver_snapshot_id from meta.build").fetchone()
        con.execute("select count(*) from meta.snapshots").fetchone()
        if row is None:
            return None
        since = int(row[0])
        if since >= silver_snapshot:
            return date.max
        changed = con.execute(
            "select min(snapshot_date) from ducklake_table_changes(current_database(), "
            "'silver', 'market_snapshots', ?, ?)",
            [since + 1, silver_snapshot],
        ).fetchone()
    except duckdb.Error:
        return None
    if changed is None or not isinstance(changed[0], date):
        return date.max
    return changed[0]


# A history request's run id (`<run_id>-h00001`): not a market snapshot.
HISTORY_RUN = "-h[0-9]{5,}$"
