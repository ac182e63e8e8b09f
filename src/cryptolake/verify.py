"""`cryptolake verify [--repair]`: the whole lake checked, as fsck or `dbt test` would.

Checks, in order (each a `CheckSummary`, each problem a `Finding`):

    bronze      every manifest reads; every body has its recorded size and sha256
    orphans     no file in a dataset partition that no manifest lists
    runs        silver processed every complete run, and no run bronze no longer holds
    data files  every DuckLake data file is present, of its recorded size, and readable
    gold        gold was built from silver's latest commit
    postgres    (with a DSN) staging holds the snapshots gold was built from, no others

Without `repair` nothing changes. With it: damaged runs are quarantined, orphans swept,
missing manifests recovered from their bodies, damaged data files' partitions rebuilt from
bronze, silver and gold brought up to date, and Postgres given what it lacks. A quarantined
run is reported, not a problem: it is out of every table by design.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from .bronze import (
    Manifest,
    is_history_request,
    read_manifest,
    read_manifests,
    run_manifest_paths,
)
from .bronze_orphans import dataset_files, find_orphans, sweep_orphans
from .bronze_recover import ProcessedRun, recover_manifest
from .bronze_verify import RunFault, check_runs, quarantine_run, quarantined_runs
from .catalog import catalog_exists, latest_snapshot, open_lake
from .errors import LakeError
from .gold import build_gold
from .lake import LakePaths
from .lake_files import damaged_files, detach_damaged
from .lock import lock_is_held
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .silver import TABLES, build_silver
from .silver_runs import drop_unbacked
from .verify_postgres import compare_postgres


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: what is wrong, and what `--repair` does (or did) about it."""

    check: str
    problem: str
    fix: str
    repaired: bool = False
    blocking: bool = True  # False: reported only (a quarantined run, a note)


@dataclass(slots=True)
class CheckSummary:
    check: str
    checked: int  # how many things were looked at (bodies, files, runs, snapshots)
    what: str  # what one of those things is (singular: "body", "data file")
    problems: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class VerifyReport:
    lake: str
    repair: bool
    checks: list[CheckSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Whether nothing outside quarantine is left to repair."""
        return not any(f.blocking and not f.repaired for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "repair": self.repair,
            "consistent": self.consistent,
            "checks": [asdict(c) | {"seconds": round(c.seconds, 3)} for c in self.checks],
            "findings": [asdict(f) for f in self.findings],
        }


class _Verifier:
    def __init__(self, settings: Settings, *, repair: bool, progress: ProgressCallback) -> None:
        self.settings = settings
        self.lake = LakePaths.of(settings)
        self.repair = repair
        self.progress = progress
        self.report = VerifyReport(str(self.lake.root), repair)
        self.manifests: list[Manifest] = []
        self.faulty: set[str] = set()  # runs with a damaged body (quarantined with repair)
        self.rebuild_silver = False
        self.full_refresh = False
        self.rebuild_gold = False
        self.drop_unproven = False  # silver holds runs bronze no longer proves
        # Findings the final silver and gold build repairs.
        self._repaired_by_rebuild: list[Finding] = []

    def check(self, name: str, what: str, body: Callable[[CheckSummary], None]) -> None:
        summary = CheckSummary(name, 0, what)
        self.progress(Progress("verify", name, 0, 1))
        t0 = time.perf_counter()
        before = len(self.report.findings)
        body(summary)
        summary.problems = sum(1 for f in self.report.findings[before:] if f.blocking)
        summary.seconds = time.perf_counter() - t0
        self.report.checks.append(summary)
        self.progress(Progress("verify", name, 1, 1, f"{summary.problems} problem(s)"))

    def found(self, check: str, problem: str, fix: str, *, blocking: bool = True) -> Finding:
        finding = Finding(check, problem, fix, repaired=False, blocking=blocking)
        self.report.findings.append(finding)
        return finding

    def mark_repaired(self, finding: Finding) -> None:
        i = self.report.findings.index(finding)
        self.report.findings[i] = Finding(
            finding.check, finding.problem, finding.fix, True, finding.blocking
        )

    # -- bronze ---------------------------------------------------------------------------
    def bronze(self, summary: CheckSummary) -> None:
        for key in run_manifest_paths(self.lake):
            path = self.lake.root / key
            try:
                self.manifests.append(read_manifest(self.lake, key))
            except LakeError as exc:
                finding = self.found("bronze", str(exc), "move the manifest to quarantine")
                if self.repair:
                    fault = RunFault(path.stem, path.parent.name.removeprefix("ingest_date="), ())
                    quarantine_run(self.lake, fault, [], found_by="verify --repair")
                    self.mark_repaired(finding)
        complete = [m for m in self.manifests if m.status == "complete"]
        summary.checked = sum(len(m.files) for m in complete)
        faults = check_runs(self.lake, complete)
        by_id = {m.run_id: m for m in complete}
        for fault in faults:
            finding = self.found(
                "bronze",
                f"run {fault.run_id}: {fault.describe()}",
                "quarantine the run (its manifest and bodies), rebuild silver without it",
            )
            if self.repair:
                files = [e.path for e in by_id[fault.run_id].files]
                quarantine_run(self.lake, fault, files, found_by="verify --repair")
                self.mark_repaired(finding)
        self.faulty = {f.run_id for f in faults}
        self.manifests = [m for m in self.manifests if m.run_id not in self.faulty]
        for q in quarantined_runs(self.lake):
            self.found(
                "bronze",
                f"run {q.run_id} is in quarantine ({q.reason}; found by {q.found_by})",
                "nothing: it is kept as evidence and read by nothing",
                blocking=False,
            )

    def orphans(self, summary: CheckSummary) -> None:
        # Another process holding the lock may be landing a run: its bodies are not orphans.
        busy = not self.repair and lock_is_held(self.lake)
        found = find_orphans(self.lake, older_than_s=3600.0 if busy else 0.0)
        summary.checked = len(dataset_files(self.lake))
        if not found:
            return
        finding = self.found(
            "orphans",
            f"{len(found):,} file(s) in dataset partitions that no manifest lists "
            f"(e.g. {found[0]}); a raw read_json glob sees them",
            "move them to quarantine/orphans/ (a run they belong to can still be recovered)",
        )
        if self.repair:
            sweep_orphans(self.lake)
            self.mark_repaired(finding)

    # -- silver and gold ------------------------------------------------------------------
    def runs(self, summary: CheckSummary) -> None:
        if not catalog_exists(self.settings):
            summary.checked = 0
            if any(self.lake.silver.rglob("*.parquet")):
                self.found(
                    "runs",
                    f"the lake catalog {self.settings.catalog_redacted} is missing, but silver/ "
                    "holds DuckLake data files",
                    "none by verify: restore the catalog, or move silver/ and gold/ aside and "
                    "run `cryptolake transform` to rebuild them from bronze",
                )
            elif self.manifests:
                self._repaired_by_rebuild.append(
                    self.found("runs", "bronze has runs but no silver yet", "build silver and gold")
                )
                self.rebuild_silver = True
            return
        with open_lake(self.settings, read_only=True) as con:
            rows = con.execute(
                "select run_id, strftime(snapshot_at at time zone 'UTC', "
                "'%Y-%m-%dT%H:%M:%S.%fZ'), vs_currency, is_sample from silver.processed_runs"
            ).fetchall()
        processed = {
            str(r[0]): ProcessedRun(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows
        }
        complete = {m.run_id for m in self.manifests if m.status == "complete"}
        quarantined = {q.run_id for q in quarantined_runs(self.lake)}
        summary.checked = len(complete | set(processed))
        pending = sorted(complete - set(processed))
        if pending:
            finding = self.found(
                "runs",
                f"{len(pending):,} complete bronze run(s) not in silver yet (first {pending[0]})",
                "build silver and gold (what `cryptolake transform` does)",
            )
            self.rebuild_silver = True
            self._repaired_by_rebuild.append(finding)
        damaged = sorted(set(processed) & (quarantined | self.faulty))
        if damaged:
            self._repaired_by_rebuild.append(
                self.found(
                    "runs",
                    f"silver holds {len(damaged):,} run(s) whose bronze bodies are damaged "
                    f"(first {damaged[0]}): nothing proves their rows any more",
                    "drop their rows from silver and gold (and then from Postgres)",
                )
            )
            self.drop_unproven = self.rebuild_silver = True
        for run_id in sorted(set(processed) - complete - quarantined - self.faulty):
            self._missing_manifest(processed[run_id])

    def _missing_manifest(self, run: ProcessedRun) -> None:
        finding = self.found(
            "runs",
            f"run {run.run_id} is in silver but its manifest is gone: a full refresh would "
            "drop its snapshot while Postgres keeps it",
            "write its manifest again from its bodies (wherever they are) and silver's record",
        )
        if not self.repair:
            return
        ids: set[str] = set()
        if not is_history_request(Path(run.run_id)):
            try:
                with open_lake(self.settings, read_only=True) as con:
                    ids = {
                        str(r[0])
                        for r in con.execute(
                            "select coin_id from silver.market_snapshots where snapshot_at = "
                            "cast(? as timestamptz)",
                            [run.snapshot_at],
                        ).fetchall()
                    }
            except (duckdb.Error, LakeError):
                # Its rows are in a damaged data file: this repair rebuilds that from bronze;
                # the manifest is written again by the next one, from the rebuilt rows.
                i = self.report.findings.index(finding)
                self.report.findings[i] = replace(
                    finding,
                    fix=finding.fix + " (after the damaged data file holding its rows is "
                    "rebuilt: run `cryptolake verify --repair` once more)",
                )
                return
        if recover_manifest(self.lake, run, silver_ids=ids) is not None:
            self.mark_repaired(finding)
        else:
            i = self.report.findings.index(finding)
            self.report.findings[i] = gone = Finding(
                "runs",
                f"run {run.run_id} is in silver but bronze no longer holds it (no manifest, "
                "no body)",
                "drop its rows from silver and gold (and then from Postgres): nothing proves them",
            )
            self._repaired_by_rebuild.append(gone)
            self.drop_unproven = self.rebuild_silver = True

    def data_files(self, summary: CheckSummary) -> None:
        if not catalog_exists(self.settings):
            return
        with open_lake(self.settings, read_only=not self.repair) as con:
            checked, damaged = damaged_files(con)
            summary.checked = checked
            findings = [
                self.found(
                    "data files",
                    f"{d.table}: {d.problem}: {d.path}",
                    "rebuild the table's affected partitions from bronze, then gold",
                )
                for d in damaged
            ]
            if not damaged or not self.repair:
                return
            silver = [d for d in damaged if d.table.startswith("silver.")]
            if silver:
                detached = detach_damaged(con, silver, tables=TABLES, run_id=None)
                self.full_refresh = self.full_refresh or detached.full_refresh
                self.rebuild_silver = True
        self.rebuild_gold = True
        self._repaired_by_rebuild.extend(findings)

    def gold(self, summary: CheckSummary) -> None:
        if not catalog_exists(self.settings) or self.rebuild_gold:
            return  # (a repair above rebuilds gold anyway)
        with open_lake(self.settings, read_only=True) as con:
            gold = latest_snapshot(con, stage="gold")
            silver = latest_snapshot(con, stage="silver")
            try:
                row = con.execute("select silver_snapshot_id from meta.build").fetchone()
            except duckdb.CatalogException:  # no build record: no gold yet
                row = None
        summary.checked = 1
        if silver is None:
            return
        if gold is None or row is None or int(row[0]) < silver.snapshot_id:
            finding = self.found(
                "gold",
                "gold was not built from silver's latest commit "
                f"(silver snapshot {silver.snapshot_id})",
                "build gold",
            )
            self.rebuild_gold = True
            self._repaired_by_rebuild.append(finding)

    def rebuild(self) -> None:
        """Silver and gold brought up to date after the repairs above."""
        if not (self.rebuild_silver or self.rebuild_gold):
            return
        self.progress(Progress("verify", "rebuild", 0, 1, "silver and gold"))
        if self.drop_unproven and not self.full_refresh:
            with open_lake(self.settings) as con:
                drop_unbacked(
                    con, read_manifests(self.lake), tables=TABLES, run_id="verify --repair"
                )
        silver = build_silver(self.settings, full_refresh=self.full_refresh, progress=self.progress)
        for run, why in silver.quarantined_runs:
            self.found(
                "bronze", f"run {run} quarantined while rebuilding: {why}", "done", blocking=False
            )
        try:
            build_gold(self.settings, full_rebuild=True, progress=self.progress)
        except LakeError as exc:  # silver left empty (its only runs were damaged), say
            self.found("gold", f"gold could not be rebuilt: {exc}", "none by verify")
            return
        for finding in self._repaired_by_rebuild:
            self.mark_repaired(finding)
        self.progress(Progress("verify", "rebuild", 1, 1, "silver and gold"))


def verify_lake(
    settings: Settings,
    *,
    repair: bool = False,
    progress: ProgressCallback = ignore_progress,
) -> VerifyReport:
    """Check the lake at `settings.lake` (and its Postgres, with a DSN); repair with `repair`.

    Returns the report: per check what was looked at and what was found. Raises LakeError
    when there is no lake there; the caller holds the lake lock when repairing.
    """
    lake = LakePaths.of(settings)
    if lake.remote:
        raise LakeError(
            f"`cryptolake verify` checks a lake on local disk, and {lake.location} is on "
            "object storage (every transform there still checks each body it reads against "
            "its manifest). To verify it, copy it to a folder (`aws s3 sync`) and verify that."
        )
    if not lake.bronze.exists():
        raise LakeError(
            f"No lake at {lake.root} (no bronze folder); check --lake or CRYPTOLAKE_LAKE."
        )
    verifier = _Verifier(settings, repair=repair, progress=progress)
    verifier.check("bronze", "body", verifier.bronze)
    verifier.check("orphans", "file", verifier.orphans)
    verifier.check("runs", "run", verifier.runs)
    verifier.check("data files", "data file", verifier.data_files)
    verifier.check("gold", "build", verifier.gold)
    if repair:
        verifier.rebuild()
    if settings.postgres_dsn is not None and catalog_exists(settings):
        verifier.check(
            "postgres",
            "snapshot",
            lambda summary: compare_postgres(
                settings,
                summary=summary,
                found=verifier.found,
                repair=repair,
                repaired=verifier.mark_repaired,
            ),
        )
    return verifier.report
