"""`status`: what the lake holds, how fresh it is, and what the last runs did."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import duckdb
import psycopg

from .bronze import read_manifests
from .bronze_orphans import find_orphans
from .bronze_verify import quarantined_runs
from .catalog import Snapshot, catalog_exists, file_counts, latest_snapshot, open_lake, snapshots
from .datasets import DATASETS
from .duck import explain_damage, one_line
from .errors import LakeError
from .fserrors import cause_of, on_lake
from .gold import GOLD_MODELS
from .history import RUNS_PREFIX, RunRecord, recent_runs
from .lake import LakePaths
from .lock import lock_is_held
from .pgconnect import describe_target, scrub
from .settings import Settings
from .silver import TABLES, processed_runs


@dataclass(frozen=True, slots=True)
class BronzeDataset:
    dataset: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class SilverTableStatus:
    table: str
    partitions: int
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """The last row of Postgres' `publish_log`: the real record of the last publish."""

    target: str
    schema: str
    publish_id: str
    finished_at: datetime
    latest_snapshot_at: datetime | None
    lake_version: str


@dataclass(frozen=True, slots=True)
class LakeStatus:
    lake: str
    complete_runs: int  # snapshot runs (ingest)
    failed_runs: int
    pending_runs: int  # complete runs and history requests silver has not read yet
    bronze: list[BronzeDataset]
    silver: list[SilverTableStatus]
    gold: dict[str, int]
    latest_snapshot_at: datetime | None  # the newest snapshot gold is built from (or silver's)
    freshness_hours: float
    runs: list[RunRecord] = field(default_factory=list)
    quarantined_rows: int = 0  # rows row-level checks kept out of silver (silver.quarantine)
    # Silver's newest snapshot when gold is not built from it (its audit failed, or no
    # transform since): what `transform` would add.
    silver_ahead_at: datetime | None = None
    # Postgres' own record of the last publish (with a DSN configured); None: never published.
    publish: PublishRecord | None = None
    # Sections that could not be read, each as one line saying why: shown, never dropped.
    problems: list[str] = field(default_factory=list)
    sample: bool = False  # the lake holds the bundled sample (recorded prices), not live data
    publishing: bool = False  # a Postgres DSN is configured
    # Postgres could not be read: the last publish is unknown (not "never").
    publish_unknown: bool = False
    # For the sample: when CoinGecko served the recorded prices (its snapshot time is the
    # replay's, so its age says nothing).
    recorded_at: datetime | None = None
    # The lake's version: the DuckLake snapshot of its last committed gold.
    lake_version: str | None = None
    snapshots: list[Snapshot] = field(default_factory=list)  # the latest, newest first
    files: dict[str, int] = field(default_factory=dict)  # data files per table
    # History requests (a manifest each, see backfill.py): landed, and coins the API did not
    # know; coins with daily history in silver.
    history_requests: int = 0
    history_not_found: int = 0
    history_coins: int = 0
    # Files in dataset partitions no manifest lists (a killed run's; the next ingest sweeps
    # them), and runs quarantined because a body failed verification.
    orphans: int = 0
    quarantined_runs: int = 0

    @property
    def age_hours(self) -> float | None:
        if self.latest_snapshot_at is None:
            return None
        return (datetime.now(UTC) - self.latest_snapshot_at).total_seconds() / 3600

    @property
    def is_fresh(self) -> bool:
        """A recent snapshot of live data; the bundled sample never is."""
        age = self.age_hours
        return not self.sample and age is not None and age <= self.freshness_hours


@on_lake("read the lake")
def lake_status(settings: Settings, *, runs: int = 10) -> LakeStatus:
    """Inventory of the lake, read from files and Parquet footers (no data is scanned)."""
    lake = LakePaths.of(settings)
    if not lake.remote and lake.root.exists() and not lake.root.is_dir():
        raise LakeError(
            f"Cannot read the lake: {lake.root} is a file, not a folder. Point --lake (or "
            "CRYPTOLAKE_LAKE) at the lake folder."
        )
    lake.store.check()
    problems = _unreadable_folders(lake)
    try:
        manifests = read_manifests(lake, status=None)
    except LakeError as exc:
        problems.append(f"bronze manifests: {exc}")
        manifests = []
    except OSError as exc:
        problems.append(f"bronze manifests: {cause_of(exc, reading=True)} ({exc.filename})")
        manifests = []
    snapshot_runs = [m for m in manifests if m.kind == "snapshot"]
    complete = [m for m in snapshot_runs if m.status == "complete"]
    requests = [m for m in manifests if m.kind == "history"]
    bronze = []
    for declared in DATASETS:
        sizes = [
            size
            for key, size in lake.store.list_sizes(f"bronze/{declared.name}")
            if key.endswith(".json")
            and key.split("/")[2].startswith("ingest_date=")
            and key.count("/") == 3
        ]
        bronze.append(BronzeDataset(declared.name, len(sizes), sum(sizes)))
    tables = _Tables()
    if catalog_exists(settings):
        try:
            tables = _read_tables(settings)
        except LakeError as exc:
            problems.append(f"lake catalog: {exc}")
        except duckdb.Error as exc:
            problems.append(f"lake catalog: {one_line(exc)}")
    problems += tables.problems
    latest = tables.gold_latest or tables.silver_latest
    history: list[RunRecord] = []
    try:
        history = recent_runs(settings, limit=runs)
    except LakeError as exc:
        problems.append(f"runs: {exc}")
    if not lake.remote and not lock_is_held(lake):
        # Nothing holds the lock, so a run still `running` was killed (the next run records
        # that; status says it now).
        history = [
            replace(r, status="killed", error="the process ended without finishing the run")
            if r.status == "running"
            else r
            for r in history
        ]
    publish, publish_problem = _last_publish(settings)
    if publish_problem:
        problems.append(publish_problem)
    sample = bool(complete) and complete[-1].source == "sample"
    return LakeStatus(
        lake=lake.location,
        complete_runs=len(complete),
        failed_runs=len(snapshot_runs) - len(complete),
        pending_runs=sum(
            1 for m in manifests if m.status == "complete" and m.run_id not in tables.done
        ),
        history_requests=sum(1 for m in requests if m.status == "complete"),
        history_not_found=len({m.coin_id for m in requests if m.status == "skipped"}),
        history_coins=tables.history_coins,
        bronze=bronze,
        silver=tables.silver,
        gold=tables.gold,
        latest_snapshot_at=latest,
        freshness_hours=settings.freshness_hours,
        runs=history,
        quarantined_rows=tables.quarantined,
        silver_ahead_at=tables.silver_latest
        if tables.silver_latest and latest and tables.silver_latest > latest
        else None,
        publish=publish,
        problems=problems,
        sample=sample,
        publishing=settings.postgres_dsn is not None,
        publish_unknown=publish_problem is not None,
        recorded_at=tables.recorded_at if sample else None,
        lake_version=tables.lake_version,
        snapshots=tables.snapshots,
        files=tables.files,
        orphans=len(find_orphans(lake)),
        quarantined_runs=len(quarantined_runs(lake)),
    )


def _unreadable_folders(lake: LakePaths) -> list[str]:
    """The lake's folders this user may not list (a glob would just find nothing in them)."""
    if lake.remote:
        return []  # an object store has no folder permissions: its errors say so
    folders = [lake.runs, lake.root / RUNS_PREFIX, *(lake.dataset(d.name) for d in DATASETS)]
    folders += [lake.silver / table.name for table in TABLES]
    return [
        f"{folder}: permission denied (this user may not read it); give this user read access "
        "(chmod -R u+rX, or run as the lake's owner)."
        for folder in folders
        if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK)
    ]


def _last_publish(settings: Settings) -> tuple[PublishRecord | None, str | None]:
    """(Postgres' last publish_log row, None) or (None, why it could not be read)."""
    if settings.postgres_dsn is None:
        return None, None
    dsn = settings.postgres_dsn.reveal()
    target = describe_target(dsn)
    schema = settings.pg_schema
    try:
        # Never wait on a lock (a publish holding publish_log): status answers in seconds.
        options = "-c statement_timeout=5000 -c lock_timeout=2000"
        with psycopg.connect(dsn, connect_timeout=5, options=options) as conn:
            exists = conn.execute("select to_regclass(%s)", [f"{schema}.publish_log"]).fetchone()
            if not exists or exists[0] is None:
                return None, None
            row = conn.execute(
                "select publish_id, finished_at, latest_snapshot_at, lake_version "
                f"from {schema}.publish_log order by case when lake_version ~ '^[0-9]+$' "
                "then lake_version::bigint end desc nulls last, finished_at desc limit 1"
            ).fetchone()
    except psycopg.Error as exc:
        return None, f"last publish: cannot read Postgres {target}: {scrub(str(exc), dsn)}"
    if row is None:
        return None, None
    return PublishRecord(target, schema, str(row[0]), row[1], row[2], str(row[3])), None


@dataclass
class _Tables:
    """What the lake's catalog says of silver and gold."""

    silver: list[SilverTableStatus] = field(default_factory=list)
    gold: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # bronze runs silver holds
    silver_latest: datetime | None = None
    gold_latest: datetime | None = None
    recorded_at: datetime | None = None
    quarantined: int = 0
    lake_version: str | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    history_coins: int = 0


def _read_tables(settings: Settings) -> _Tables:
    """Counts from the catalog's current snapshot (read-only: a run may be writing)."""
    found = _Tables()
    with open_lake(settings, read_only=True) as con:
        existing = {
            f"{r[0]}.{r[1]}"
            for r in con.execute(
                "select schema_name, table_name from duckdb_tables() "
                "where database_name = current_database()"
            ).fetchall()
        }
        sizes = dict(
            con.execute(
                "select table_name, file_size_bytes + delete_file_size_bytes from lake.table_info()"
            ).fetchall()
        )
        currency = None
        if "meta.build" in existing:
            row = con.execute("select vs_currency from meta.build").fetchone()
            currency = str(row[0]) if row else None
        for table in TABLES:
            if table.qualified not in existing:
                found.silver.append(SilverTableStatus(table.name, 0, 0, 0))
                continue
            try:
                rows, partitions = con.execute(
                    f"select count(*), count(distinct {table.partition_expr}) "
                    f"from {table.qualified}"
                ).fetchone() or (0, 0)
            except duckdb.Error as exc:
                # One unreadable file must not hide the rest of the inventory.
                hint = explain_damage(exc, "")
                found.problems.append(
                    f"{table.qualified}: {one_line(exc)}" + (f"; {hint}" if hint else "")
                )
                rows = partitions = 0
            found.silver.append(
                SilverTableStatus(
                    table.name, int(partitions), int(rows), int(sizes.get(table.name) or 0)
                )
            )
        if "silver.market_snapshots" in existing and not found.problems:
            found.silver_latest, found.recorded_at = _one_datetime_row(
                con,
                "select max(snapshot_at) as a, max(last_updated_at) as b "
                "from silver.market_snapshots where vs_currency = coalesce(?, vs_currency)",
                [currency],
            )
        if "silver.processed_runs" in existing:
            found.done = set(processed_runs(con))
        if "silver.coin_history_daily" in existing and not found.problems:
            row = con.execute(
                "select count(distinct coin_id) from silver.coin_history_daily"
            ).fetchone()
            found.history_coins = int(row[0]) if row else 0
        if "silver.quarantine" in existing:
            row = con.execute("select count(*) from silver.quarantine").fetchone()
            found.quarantined = int(row[0]) if row else 0
        for name in GOLD_MODELS:
            if f"gold.{name}" in existing:
                row = con.execute(f"select count(*) from gold.{name}").fetchone()
                found.gold[name] = int(row[0]) if row else 0
        if "meta.snapshots" in existing and currency:
            found.gold_latest, _ = _one_datetime_row(
                con,
                "select max(snapshot_at) as a, null as b from meta.snapshots where vs_currency = ?",
                [currency],
            )
        gold = latest_snapshot(con, stage="gold")
        found.lake_version = str(gold.snapshot_id) if gold else None
        found.snapshots = snapshots(con, limit=5)
        found.files = file_counts(con)
    return found


def _one_datetime_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object]
) -> tuple[datetime | None, datetime | None]:
    """Two timestamptz values (`a`, `b`) read through Arrow (no pytz needed)."""
    rows = con.execute(sql, params).to_arrow_table().to_pylist()
    first = rows[0] if rows else {}
    a, b = first.get("a"), first.get("b")
    return (
        a if isinstance(a, datetime) else None,
        b if isinstance(b, datetime) else None,
    )
