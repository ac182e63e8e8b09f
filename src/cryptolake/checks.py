"""Running the data-quality checks (see checkdefs for what they are and what a failure does).

`build_gold` runs the blocking and warning checks on the new gold inside its transaction,
before commit; a blocking failure rolls it back and is recorded in `meta.audit_failures`
(`record_audit_failure`). `cryptolake check` runs every check on the lake as it is and shows
the failures of the last audit when that audit kept its gold out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .catalog import latest_snapshot, open_lake, set_commit_message
from .checkdefs import CheckDef, OnFail, check_defs
from .duck import explain_damage, one_line
from .errors import CheckError, TransformError
from .fserrors import duckdb_io_error
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings

SAMPLE_ROWS = 5


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    description: str
    failing_rows: int
    columns: list[str] = field(default_factory=list)
    sample: list[tuple[Any, ...]] = field(default_factory=list)
    on_fail: OnFail = "block"

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0

    @property
    def blocks(self) -> bool:
        """Whether this result fails a build or `cryptolake check` (warnings never do).

        A quarantine check returns rows only on silver built before it existed: those rows
        never went through it (`transform --full-refresh` sets them aside).
        """
        return not self.passed and self.on_fail != "warn"


def evaluate(
    con: duckdb.DuckDBPyConnection,
    defs: Sequence[CheckDef],
    *,
    progress: ProgressCallback = ignore_progress,
) -> list[CheckResult]:
    """Run each check on `con` and count (and sample) the rows it returns."""
    results: list[CheckResult] = []
    for done, check in enumerate(defs, start=1):
        try:
            count_row = con.execute(f"select count(*) from ({check.sql})").fetchone()
            failing = int(count_row[0]) if count_row else 0
            columns: list[str] = []
            sample: list[tuple[Any, ...]] = []
            if failing:
                cur = con.execute(
                    f"select columns(*)::varchar from ({check.sql}) limit {SAMPLE_ROWS}"
                )
                columns = [d[0] for d in cur.description or []]
                sample = cur.fetchall()
        except duckdb.Error as exc:
            if (translated := duckdb_io_error(exc, doing=f"run check {check.name}")) is not None:
                raise translated from None
            raise TransformError(
                f"Check {check.name} could not run: {one_line(exc)}. "
                + explain_damage(exc, "Run `cryptolake verify` to check the lake's files.")
            ) from None
        results.append(
            CheckResult(
                check.name, check.description, failing, columns, sample, on_fail=check.on_fail
            )
        )
        progress(Progress("checks", "checks", done, len(defs), check.name))
    return results


def run_checks(
    settings: Settings,
    *,
    raise_on_failure: bool = True,
    progress: ProgressCallback = ignore_progress,
) -> list[CheckResult]:
    """Run every check on the lake as it is; raise `ChecksFailed` on a blocking failure.

    Quarantine checks return no rows here (their rows never reached silver), warnings never
    raise. When the last gold build failed its audit, its failures come first (named
    `<check> (rolled back)`): that gold never committed, but its rows are what to look at.
    `raise_on_failure=False` returns the results whatever they are.
    """
    with open_lake(settings, read_only=True) as con:
        results = evaluate(con, check_defs(), progress=progress)
        kept_out = last_audit_failures(con)
    results = kept_out + results
    failed = [r for r in results if r.blocks]
    if failed and raise_on_failure:
        raise ChecksFailed(failed)
    return results


AUDIT_FAILURES_DDL = (
    "create table if not exists meta.audit_failures (run_id varchar, check_name varchar, "
    "description varchar, on_fail varchar, failing_rows bigint, columns varchar[], "
    "sample json, audited_at timestamptz)"
)


def record_audit_failure(
    con: duckdb.DuckDBPyConnection, failures: Sequence[CheckResult], *, run_id: str | None
) -> None:
    """Keep a failed audit's checks and first rows in `meta.audit_failures` (its own commit).

    Called after the build's transaction rolled back: the lake's gold is the previous one,
    and this commit adds only the record of why the new one was kept out.
    """
    con.execute("begin")
    con.execute(AUDIT_FAILURES_DDL)
    con.executemany(
        "insert into meta.audit_failures values (?, ?, ?, ?, ?, ?, ?, now())",
        [
            [
                run_id,
                f.name,
                f.description,
                f.on_fail,
                f.failing_rows,
                f.columns,
                json.dumps([list(map(str, row)) for row in f.sample]),
            ]
            for f in failures
        ],
    )
    set_commit_message(
        con,
        f"audit failed: {', '.join(f.name for f in failures)}; gold kept as it was",
        stage="audit",
        run_id=run_id,
    )
    con.execute("commit")


def last_audit_failures(con: duckdb.DuckDBPyConnection) -> list[CheckResult]:
    """The failures of the last audit, if it failed after the last gold commit; else []."""
    failed = latest_snapshot(con, stage="audit")
    gold = latest_snapshot(con, stage="gold")
    if failed is None or (gold is not None and gold.snapshot_id > failed.snapshot_id):
        return []
    rows = con.execute(
        "select check_name, description, on_fail, failing_rows, columns, sample::varchar "
        "from meta.audit_failures "
        "where audited_at = (select max(audited_at) from meta.audit_failures) order by 1"
    ).fetchall()
    return [
        CheckResult(
            f"{name} (rolled back)",
            str(description),
            int(failing),
            list(columns),
            [tuple(r) for r in json.loads(sample)],
            on_fail=on_fail,
        )
        for name, description, on_fail, failing, columns, sample in rows
    ]


def quarantine_summary(settings: Settings) -> list[tuple[str, str, int]]:
    """(table, check, rows) of every quarantined row group in the lake, largest first."""
    with open_lake(settings, read_only=True) as con:
        try:
            rows = con.execute(
                "select table_name, check_name, count(*) from silver.quarantine "
                "group by all order by 3 desc, 1, 2"
            ).fetchall()
        except duckdb.CatalogException:
            return []  # a lake without silver yet
    return [(str(t), str(c), int(n)) for t, c, n in rows]


class ChecksFailed(CheckError):
    """One or more blocking checks returned rows; `.failures` has them, with sample rows."""

    def __init__(self, failures: list[CheckResult]) -> None:
        lines = [
            f"{len(failures)} data-quality check(s) failed; the lake keeps its previous gold "
            "and nothing was published."
        ]
        for f in failures:
            lines.append(f"  {f.name}: {f.description} ({f.failing_rows} offending rows)")
            for row in f.sample:
                lines.append(
                    "    " + ", ".join(f"{c}={v}" for c, v in zip(f.columns, row, strict=True))
                )
        super().__init__("\n".join(lines))
        self.failures = failures
