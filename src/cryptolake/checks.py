"""Running the data-quality checks (see checkdefs for what they are and what a failure does).

`build_gold` runs the blocking and warning checks on the new gold before promoting it; this
module also runs every check on the lake as it is, for `cryptolake check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .checkdefs import CheckDef, OnFail, check_defs
from .duck import one_line
from .errors import CheckError, TransformError
from .fserrors import duckdb_io_error
from .lakedb import open_lake_db
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
                f"Check {check.name} could not run: {one_line(exc)}. If a silver file is "
                "damaged, rebuild silver from bronze: `cryptolake transform --full-refresh`."
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
    raise. `raise_on_failure=False` returns the results whatever they are.
    """
    with open_lake_db(settings, read_only=True) as con:
        results = evaluate(con, check_defs(), progress=progress)
    failed = [r for r in results if r.blocks]
    if failed and raise_on_failure:
        raise ChecksFailed(failed)
    return results


def quarantine_summary(settings: Settings) -> list[tuple[str, str, int]]:
    """(table, check, rows) of every quarantined row group in the lake, largest first."""
    with open_lake_db(settings, read_only=True) as con:
        try:
            rows = con.execute(
                "select table_name, check_name, count(*) from silver.quarantine "
                "group by all order by 3 desc, 1, 2"
            ).fetchall()
        except duckdb.CatalogException:
            return []  # a lake database built before quarantine existed
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
