"""`status`: what the lake holds, how fresh it is, and what the last runs did."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg

from .bronze import read_manifests
from .duck import connect, one_line, quote_literal
from .errors import LakeError
from .fserrors import cause_of, on_lake
from .gold import GOLD_MODELS
from .history import RunRecord, recent_runs, runs_folder
from .lake import DATASETS, LakePaths
from .lock import lock_is_held
from .pgconnect import describe_target, scrub
from .settings import Settings
from .silver import PARTITION, TABLES, processed_runs


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
    complete_runs: int
    failed_runs: int
    pending_runs: int
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
    lake = LakePaths.at(settings.lake)
    if lake.root.exists() and not lake.root.is_dir():
        raise LakeError(
            f"Cannot read the lake: {lake.root} is a file, not a folder. Point --lake (or "
            "CRYPTOLAKE_LAKE) at the lake folder."
        )
    problems = _unreadable_folders(lake)
    try:
        manifests = read_manifests(lake, status=None)
    except LakeError as exc:
        problems.append(f"bronze manifests: {exc}")
        manifests = []
    except OSError as exc:
        problems.append(f"bronze manifests: {cause_of(exc, reading=True)} ({exc.filename})")
        manifests = []
    complete = [m for m in manifests if m.status == "complete"]
    try:
        done = processed_runs(lake)
    except LakeError as exc:
        problems.append(f"silver's processed runs: {exc}")
        done = set()
    except OSError as exc:
        problems.append(f"silver's processed runs: {cause_of(exc, reading=True)} ({exc.filename})")
        done = set()
    bronze = []
    for dataset in DATASETS:
        files = list(lake.dataset(dataset).glob("ingest_date=*/*.json"))
        bronze.append(BronzeDataset(dataset, len(files), sum(f.stat().st_size for f in files)))

    con = connect(settings)
    try:
        silver = []
        latest: datetime | None = None
        recorded_at: datetime | None = None
        for table in TABLES:
            parts = sorted(table.folder(lake).glob(f"{PARTITION}=*/*.parquet"))
            try:
                rows = _parquet_rows(con, [str(p) for p in parts])
                if table.name == "market_snapshots" and parts:
                    latest = _latest_snapshot(con, parts, _gold_currency(settings, lake))
                    recorded_at = _recorded_at(con, parts[-1])
            except duckdb.Error as exc:
                # One unreadable file must not hide the rest of the inventory.
                problems.append(f"silver.{table.name}: {one_line(exc)}")
                rows = 0
            silver.append(
                SilverTableStatus(
                    table.name, len(parts), rows, sum(p.stat().st_size for p in parts)
                )
            )
        try:
            quarantined = _parquet_rows(
                con, [str(p) for p in sorted(lake.silver_quarantine.glob("*/*.parquet"))]
            )
        except duckdb.Error as exc:
            problems.append(f"silver.quarantine: {one_line(exc)}")
            quarantined = 0
    finally:
        con.close()

    gold: dict[str, int] = {}
    history: list[RunRecord] = []
    silver_latest = latest
    if lake.database.exists():
        try:
            gold, gold_latest = _gold_counts(settings, lake)
        except duckdb.Error as exc:
            problems.append(f"gold: cannot read {lake.database}: {one_line(exc)}")
        else:
            latest = gold_latest or latest
    try:
        history = recent_runs(settings, limit=runs)
    except LakeError as exc:
        problems.append(f"runs: {exc}")
    if not lock_is_held(lake):
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
        lake=str(lake.root),
        complete_runs=len(complete),
        failed_runs=len(manifests) - len(complete),
        pending_runs=sum(1 for m in complete if m.run_id not in done),
        bronze=bronze,
        silver=silver,
        gold=gold,
        latest_snapshot_at=latest,
        freshness_hours=settings.freshness_hours,
        runs=history,
        quarantined_rows=quarantined,
        silver_ahead_at=silver_latest
        if silver_latest and latest and silver_latest > latest
        else None,
        publish=publish,
        problems=problems,
        sample=sample,
        publishing=settings.postgres_dsn is not None,
        publish_unknown=publish_problem is not None,
        recorded_at=recorded_at if sample else None,
    )


def _unreadable_folders(lake: LakePaths) -> list[str]:
    """The lake's folders this user may not list (a glob would just find nothing in them)."""
    folders = [lake.runs, runs_folder(lake), *(lake.dataset(d) for d in DATASETS)]
    folders += [table.folder(lake) for table in TABLES]
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
                f"from {schema}.publish_log order by finished_at desc limit 1"
            ).fetchone()
    except psycopg.Error as exc:
        return None, f"last publish: cannot read Postgres {target}: {scrub(str(exc), dsn)}"
    if row is None:
        return None, None
    return PublishRecord(target, schema, str(row[0]), row[1], row[2], str(row[3])), None


def _parquet_rows(con: duckdb.DuckDBPyConnection, files: list[str]) -> int:
    if not files:
        return 0
    listed = ", ".join(quote_literal(f) for f in files)
    row = con.execute(
        f"select coalesce(sum(num_rows), 0) from parquet_file_metadata([{listed}])"
    ).fetchone()
    return int(row[0]) if row else 0


def _gold_currency(settings: Settings, lake: LakePaths) -> str | None:
    """The currency the lake database's gold is built for, if it says."""
    if not lake.database.exists():
        return None
    try:
        con = connect(settings, lake.database, read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("select vs_currency from meta.build").fetchone()
        return str(row[0]) if row else None
    except duckdb.Error:
        return None
    finally:
        con.close()


def _latest_snapshot(
    con: duckdb.DuckDBPyConnection, partitions: list[Path], currency: str | None
) -> datetime | None:
    """Silver's newest snapshot (in `currency`, if given), newest partitions first."""
    where = f"where vs_currency = {quote_literal(currency)}" if currency else ""
    for partition in reversed(partitions):
        rows = (
            con.execute(
                "select max(snapshot_at) as latest "
                f"from read_parquet({quote_literal(str(partition))}) {where}"
            )
            .to_arrow_table()
            .to_pylist()
        )
        value = rows[0]["latest"] if rows else None
        if isinstance(value, datetime):
            return value
    return None


def _recorded_at(con: duckdb.DuckDBPyConnection, partition: Path) -> datetime | None:
    """When CoinGecko last updated the quotes of the newest partition."""
    rows = (
        con.execute(
            "select max(last_updated_at) as recorded "
            f"from read_parquet({quote_literal(str(partition))})"
        )
        .to_arrow_table()
        .to_pylist()
    )
    value = rows[0]["recorded"] if rows else None
    return value if isinstance(value, datetime) else None


def _gold_counts(settings: Settings, lake: LakePaths) -> tuple[dict[str, int], datetime | None]:
    """Rows per gold table, and the newest snapshot gold is built from (None before builds
    recorded it)."""
    con = connect(settings, lake.database, read_only=True)
    try:
        existing = {
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'gold'"
            ).fetchall()
        }
        counts = {}
        for name in GOLD_MODELS:
            if name in existing:
                row = con.execute(f"select count(*) from gold.{name}").fetchone()
                counts[name] = int(row[0]) if row else 0
        try:
            rows = (
                con.execute(
                    "select max(snapshot_at) as latest from meta.snapshots "
                    "where vs_currency = (select vs_currency from meta.build)"
                )
                .to_arrow_table()
                .to_pylist()
            )
        except duckdb.CatalogException:
            rows = []
        value = rows[0]["latest"] if rows else None
        return counts, value if isinstance(value, datetime) else None
    finally:
        con.close()
