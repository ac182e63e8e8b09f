"""Data-quality checks as SQL files: what each checks, and what its failure does.

`sql/duckdb/checks/<name>.sql` is a query that must return no rows (dbt's data tests,
SQLMesh's audits). Its leading comment block says what it checks (the first line) and what a
failure does (`-- on_fail: ...`). The policy, in the write-audit-publish spirit:

- `block` (the default): checks on gold (keys, shares, totals against `/global`). They run on
  the new gold inside its transaction, before commit; a failure rolls it back (the lake keeps
  its previous gold), fails the run and publishes nothing. They look at the latest snapshot
  or at invariants of whole tables, so an old failure cannot block the lake forever: the
  next good snapshot passes.
- `quarantine`: row-level checks on a silver table, ending in `select * from silver.<table>
  where ...` (they may read other silver tables before that, to compare a snapshot's coins
  with its /global, say). They gate new data only: each batch's offending rows are moved out
  of silver into `silver.quarantine` with the check's name, so gold and publish never see
  them, the run reports them, and later runs are not held up by a row already set aside.
- `warn`: reported, never blocking (freshness: an old lake's figures are still right; use
  `cryptolake status --fail-if-stale` to alert on it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import CryptolakeError
from .sqlfiles import load_sql, sql_names

OnFail = Literal["block", "quarantine", "warn"]
_KINDS: dict[str, OnFail] = {"block": "block", "quarantine": "quarantine", "warn": "warn"}
_DIRECTIVE = re.compile(r"--\s*on_fail:\s*(\w+)(\s+whole\s+snapshot)?\s*$")
_SILVER_TABLE = re.compile(r"\bfrom\s+silver\.(\w+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CheckDef:
    name: str
    description: str
    on_fail: OnFail
    sql: str
    table: str | None = None  # the silver table a quarantine check reads
    # A quarantine check whose rows condemn their whole snapshot: every table's rows of it
    # go (`-- on_fail: quarantine whole snapshot`).
    whole_snapshot: bool = False


def _parse(name: str, sql: str) -> CheckDef:
    lines: list[str] = []  # the description: the comment lines before any directive
    described = False
    on_fail: str = "block"
    whole_snapshot = False
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        if directive := _DIRECTIVE.match(line):
            on_fail, whole_snapshot = directive[1], bool(directive[2])
            described = True
        elif not described and line.strip("- "):
            lines.append(line.lstrip("- ").strip())
        else:
            described = True
    description = " ".join(lines) or "(no description)"
    kind = _KINDS.get(on_fail)
    if kind is None:
        raise CryptolakeError(
            f"Check {name}: on_fail must be block, quarantine or warn, got {on_fail!r}."
        )
    table = None
    if kind == "quarantine":
        tables = _SILVER_TABLE.findall(sql)
        if not tables:
            raise CryptolakeError(
                f"Check {name} quarantines rows, so it must end in `select * from "
                "silver.<table> where ...`."
            )
        table = tables[-1]  # the table of its final select: the one rows are taken from
    if whole_snapshot and kind != "quarantine":
        raise CryptolakeError(f"Check {name}: only a quarantine check takes 'whole snapshot'.")
    return CheckDef(name, description, kind, sql, table, whole_snapshot)


def check_defs(*, on_fail: tuple[OnFail, ...] = ("block", "quarantine", "warn")) -> list[CheckDef]:
    """Every check in `sql/duckdb/checks/`, by name, restricted to the given kinds."""
    found = [
        _parse(name, load_sql(f"duckdb/checks/{name}.sql")) for name in sql_names("duckdb/checks")
    ]
    return [c for c in found if c.on_fail in on_fail]
