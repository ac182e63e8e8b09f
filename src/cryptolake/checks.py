"""Data-quality checks: each `sql/duckdb/checks/<name>.sql` is a query that must return no rows.

The file's first comment line is the check's description. Checks run after every build and
before anything is published; `cryptolake check` runs them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from .errors import CheckError, TransformError
from .lakedb import open_lake_db
from .progress import Progress, ProgressCallback, ignore_progress
from .settings import Settings
from .sqlfiles import load_sql, sql_names

SAMPLE_ROWS = 5


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    description: str
    failing_rows: int
    columns: list[str] = field(default_factory=list)
    sample: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


def _description(sql: str) -> str:
    for line in sql.splitlines():
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return "(no description)"


def run_checks(
    settings: Settings,
    *,
    raise_on_failure: bool = True,
    progress: ProgressCallback = ignore_progress,
) -> list[CheckResult]:
    """Run every check; raise `CheckError` naming the failures unless told not to."""
    names = sql_names("duckdb/checks")
    results: list[CheckResult] = []
    with open_lake_db(settings, read_only=True) as con:
        for done, name in enumerate(names, start=1):
            sql = load_sql(f"duckdb/checks/{name}.sql")
            try:
                count_row = con.execute(f"select count(*) from ({sql})").fetchone()
                failing = int(count_row[0]) if count_row else 0
                columns: list[str] = []
                sample: list[tuple[Any, ...]] = []
                if failing:
                    cur = con.execute(
                        f"select columns(*)::varchar from ({sql}) limit {SAMPLE_ROWS}"
                    )
                    columns = [d[0] for d in cur.description or []]
                    sample = cur.fetchall()
            except duckdb.Error as exc:
                raise TransformError(f"Check {name} could not run: {exc}") from None
            results.append(CheckResult(name, _description(sql), failing, columns, sample))
            progress(Progress("checks", "checks", done, len(names), name))
    failed = [r for r in results if not r.passed]
    if failed and raise_on_failure:
        raise ChecksFailed(failed)
    return results


class ChecksFailed(CheckError):
    """One or more checks returned rows; `.failures` has them, with sample rows."""

    def __init__(self, failures: list[CheckResult]) -> None:
        lines = [f"{len(failures)} data-quality check(s) failed; nothing was published."]
        for f in failures:
            lines.append(f"  {f.name}: {f.description} ({f.failing_rows} offending rows)")
            for row in f.sample:
                lines.append(
                    "    " + ", ".join(f"{c}={v}" for c, v in zip(f.columns, row, strict=True))
                )
        super().__init__("\n".join(lines))
        self.failures = failures
