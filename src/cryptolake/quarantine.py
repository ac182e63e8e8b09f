"""Quarantine: rows of a new silver batch that fail a row-level check are set aside, with why.

A negative volume must not reach gold or Postgres, but neither may it stop every later run:
row-level checks (`on_fail: quarantine`, see checkdefs) run on each new batch before it is
upserted into silver. The rows they return are removed from the batch and kept, with the
check's name and the whole row as JSON, in the DuckLake table `silver.quarantine`, written in
the transaction that upserts the batch: a crash loses both or neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import duckdb

from .checkdefs import CheckDef
from .duck import json_list, quote_literal
from .errors import TransformError
from .sqlfiles import load_sql

ROWS = "quarantine_rows"  # the temp table a build collects quarantined rows in
_SILVER_NAME = re.compile(r"\bsilver\.(\w+)\b", re.IGNORECASE)


def quarantine_ddl(table: str, *, temporary: bool = False) -> str:
    """The statement creating an (empty) quarantine table named `table`."""
    sql = load_sql("duckdb/meta/quarantine.sql").replace("{{table}}", table)
    return sql.replace("create table", "create temporary table", 1) if temporary else sql


def key_check(table: str, key: tuple[str, ...], text_key: tuple[str, ...]) -> CheckDef:
    """The built-in row check every table gets: a text key column is clean text.

    NUL characters are stripped from text (sanitize), so `bit\\u0000coin` would become
    another row's key; a key with U+FFFD had a lone surrogate replaced (silver_io), so two
    different ids may have become one. Such a row is set aside before it can merge.
    """
    condition = (
        " or ".join(
            f"{c} is null or contains({c}, chr(0)) or contains({c}, '\ufffd')" for c in text_key
        )
        or "false"
    )
    return CheckDef(
        name=f"{table}_key_clean",
        description=f"silver.{table}'s key ({', '.join(key)}) is present and holds no NUL "
        "character and no replaced invalid Unicode.",
        on_fail="quarantine",
        sql=f"select * from silver.{table} where {condition}",
        table=table,
    )


def quarantine_batches(
    con: duckdb.DuckDBPyConnection,
    *,
    batches: dict[str, tuple[str, tuple[str, ...]]],
    checks: Iterable[CheckDef],
) -> dict[tuple[str, str], int]:
    """Move rows that fail a check out of the batch temp tables into `quarantine_rows`.

    `batches` maps each silver table to (its batch's temp table, its key). Each check runs as
    written, with `silver.<table>` standing for that table's batch, so a check may compare
    tables (a snapshot's coins against its /global). A check that sets aside whole snapshots
    takes every table's rows of them. Returns the rows set aside per (table, check) (a row
    failing two checks is recorded twice, removed once).
    """
    con.execute(quarantine_ddl(ROWS, temporary=True))
    con.execute(f"delete from {ROWS}")

    # The checks name `silver.<table>`: here, that table's batch (a temp table: a transaction
    # writing the lake may write nothing else but temp objects).
    def on_batches(sql: str) -> str:
        return _SILVER_NAME.sub(lambda m: batches[m[1]][0] if m[1] in batches else m[0], sql)

    counts: dict[tuple[str, str], int] = {}
    try:
        for check in checks:
            if check.table not in batches:
                continue
            batch, key = batches[check.table]
            counts[(check.table, check.name)] = _set_aside(
                con, check, check.table, on_batches(check.sql), batch=batch, key=key
            )
            if not (check.whole_snapshot and counts[(check.table, check.name)]):
                continue
            con.execute(
                "create or replace temp table failed_snapshots as "
                "select distinct snapshot_at from failing"
            )
            for table, (other, other_key) in batches.items():
                # History tables hold no snapshot: their rows are the data's own days.
                if table != check.table and "snapshot_at" in other_key:
                    counts[(table, check.name)] = _set_aside(
                        con,
                        check,
                        table,
                        f"select * from {other} "
                        "where snapshot_at in (select snapshot_at from failed_snapshots)",
                        batch=other,
                        key=other_key,
                    )
    finally:
        con.execute("drop table if exists failing")
        con.execute("drop table if exists failed_snapshots")
    return counts


def _set_aside(
    con: duckdb.DuckDBPyConnection,
    check: CheckDef,
    table: str,
    sql: str,
    *,
    batch: str,
    key: tuple[str, ...],
) -> int:
    """Move the rows `sql` returns from temp table `batch` (of silver `table`) to quarantine."""
    con.execute(f"create or replace temp table failing as {sql}")
    columns = {r[0] for r in con.execute("describe failing").fetchall()}
    # Snapshot rows carry their snapshot_at; history rows (event time from the data) do not.
    needed = {*key, "run_id"}
    if not needed <= columns:
        raise TransformError(
            f"Check {check.name} quarantines rows of silver.{table}, so it must select "
            f"their key columns ({', '.join(sorted(needed))}); use `select *`."
        )
    row = con.execute("select count(*) from failing").fetchone()
    found = int(row[0]) if row else 0
    if found:
        row_key = ", ".join(f"{quote_literal(k)}, failing.{k}" for k in key)
        snapshot_at = "failing.snapshot_at" if "snapshot_at" in columns else "null"
        con.execute(
            f"insert into {ROWS} select ?, ?, ?, json_object({row_key}), failing.run_id, "
            f"{snapshot_at}, to_json(failing), now() from failing",
            [table, check.name, check.description],
        )
        matches = " and ".join(f"{batch}.{k} = failing.{k}" for k in key)
        con.execute(f"delete from {batch} using failing where {matches}")
    return found


def ensure_quarantine(con: duckdb.DuckDBPyConnection) -> None:
    """Create `silver.quarantine` in the lake if missing (in the caller's transaction)."""
    con.execute(quarantine_ddl("silver.quarantine"))


def write_quarantine(con: duckdb.DuckDBPyConnection, *, run_ids: Iterable[str]) -> None:
    """Replace the quarantined rows of `run_ids`, in every table, with this batch's.

    One delete for the batch: on a lake's catalog every statement costs a metadata read
    (tens of ms on a year-old lake), and every table's rows of these runs go at once.
    """
    con.execute(quarantine_ddl(ROWS, temporary=True))
    con.execute(
        "delete from silver.quarantine where run_id in (select unnest(?::json::varchar[]))",
        [json_list(run_ids)],
    )
    con.execute(
        f"insert into silver.quarantine select * from {ROWS} "
        "order by table_name, run_id, check_name, row_key"
    )
