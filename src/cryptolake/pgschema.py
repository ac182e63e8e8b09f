"""The Postgres side's schema: DDL from `sql/postgres/`, evolved in place, and its encoding.

Tables are created from their DDL file when missing. When one exists from an older cryptolake,
its columns are compared with the DDL's (dlt's `_build_schema_update_sql` is the model): a new
column is added (nullable); a column the lake no longer writes is dropped from a mart (unless a
view reads it: then it stays, empty, and a note names the view) and kept, freed of NOT NULL, in
staging, whose rows are history. `insert ... by name` works either way and no consumer's schema
needs dropping by hand. The DDL's column types are read back from Postgres itself (the
statement is run once on a temporary table), so nothing parses SQL here.

A database whose encoding cannot hold the lake's text (LATIN1 and coin names in CJK, say) is
refused before anything is written, naming a value it cannot hold.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable

import duckdb

from .errors import PublishError
from .pgext import pg_execute, pg_rows
from .sqlfiles import load_sql

log = logging.getLogger(__name__)

_CREATE_TABLE = re.compile(r"create\s+table\s+if\s+not\s+exists\s+\S+", re.IGNORECASE)
# Server encodings Postgres converts UTF-8 into (client_encoding=UTF8), by Python codec.
# UTF8 holds everything; SQL_ASCII stores the bytes unconverted.
PG_CODECS = {
    **{
        f"LATIN{n}": f"iso8859-{m}"
        for n, m in zip(range(1, 11), (1, 2, 3, 4, 9, 10, 13, 14, 15, 16), strict=True)
    },
    **{f"ISO_8859_{n}": f"iso8859-{n}" for n in (5, 6, 7, 8)},
    **{
        f"WIN{n}": f"cp{n}"
        for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258)
    },
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
    "EUC_JP": "euc_jp",
    "EUC_CN": "gb2312",
    "EUC_KR": "euc_kr",
    "EUC_JIS_2004": "euc_jis_2004",
    "EUC_TW": "big5",
    "MULE_INTERNAL": "ascii",
}


def ddl_statements(name: str, schema: str) -> list[str]:
    """The statements of `sql/postgres/<name>.sql` for `schema`, split on `;`."""
    sql = load_sql(f"postgres/{name}.sql").replace("{{schema}}", schema)
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, tuple[str, bool]]:
    """name -> (type, not null) of a Postgres relation, in column order."""
    rows = pg_rows(
        con,
        "select attname::text, format_type(atttypid, atttypmod), attnotnull "
        f"from pg_attribute where attrelid = '{relation}'::regclass "
        "and attnum > 0 and not attisdropped order by attnum",
    )
    return {str(n): (str(t), bool(nn)) for n, t, nn in rows}


# Columns a release renamed, old name -> new: named in the note when an old one is dropped.
RENAMED = {
    "daily_return": "daily_return_ratio",
    "volatility_7d": "volatility_7d_ratio",
    "market_cap_share_pct": "tracked_market_cap_share_pct",
}


def _dependents(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> list[str]:
    """Views (and rules) that read `column` of `relation`."""
    rows = pg_rows(
        con,
        "select distinct format('%I.%I', n.nspname, c.relname) "
        "from pg_depend as d join pg_rewrite as r on r.oid = d.objid "
        "join pg_class as c on c.oid = r.ev_class "
        "join pg_namespace as n on n.oid = c.relnamespace "
        f"join pg_attribute as a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid "
        f"where d.refobjid = '{relation}'::regclass and a.attname = '{column}' "
        "and c.oid <> d.refobjid order by 1",
    )
    return [str(r[0]) for r in rows]


def evolve_table(
    con: duckdb.DuckDBPyConnection, *, schema: str, name: str, create: str, derived: bool
) -> list[str]:
    """Give `schema.name` every column of its DDL statement `create`; returns notes for users.

    Runs in DuckDB's current Postgres transaction, right after `create` (so the table exists).
    New columns are added. A column the lake no longer writes is dropped from a `derived`
    table (a mart, refilled from gold: the column would only ever be empty), unless a view
    reads it, in which case it stays, empty, and a note says so; elsewhere (staging, whose
    rows are history) it keeps its data and loses NOT NULL. Raises PublishError for a column
    whose type changed: that needs a person to decide.
    """
    probe = f"pg_temp.cryptolake_ddl_{name}"
    pg_execute(con, _CREATE_TABLE.sub(f"create temporary table {probe}", create, count=1))
    try:
        wanted = _columns(con, probe)
    finally:
        pg_execute(con, f"drop table {probe}")
    relation = f"{schema}.{name}"
    existing = _columns(con, relation)
    changes, notes = [], []
    for column, (kind, _) in wanted.items():
        if column not in existing:
            changes.append(f"alter table {relation} add column {column} {kind}")
        elif existing[column][0] != kind:
            raise PublishError(
                f"Postgres column {relation}.{column} is {existing[column][0]}, but this "
                f"cryptolake writes {kind}: rename or drop that column (alter table "
                f"{relation} ...) and publish again."
            )
    for column, (_, not_null) in existing.items():
        if column in wanted:
            continue
        now = f" (now {RENAMED[column]})" if column in RENAMED else ""
        readers = _dependents(con, relation, column) if derived else []
        if derived and not readers:
            changes.append(f"alter table {relation} drop column {column}")
            notes.append(f"{relation}.{column} is no longer written{now}: dropped.")
            continue
        if not_null:
            changes.append(f"alter table {relation} alter column {column} drop not null")
        if readers:
            notes.append(
                f"{relation}.{column} is no longer written{now} and stays empty: "
                f"{', '.join(readers)} still read(s) it; update them, then drop the column."
            )
    if changes:
        pg_execute(con, "; ".join(changes))
        log.info("evolved %s: %s", relation, "; ".join(changes))
    return notes


def unencodable(values: Iterable[str], server_encoding: str) -> str | None:
    """The first value the server encoding cannot hold, or None if it holds them all."""
    encoding = server_encoding.upper()
    if encoding in ("UTF8", "SQL_ASCII"):
        return None
    codec = codecs.lookup(PG_CODECS.get(encoding, "ascii")).name
    for value in values:
        try:
            value.encode(codec)
        except UnicodeEncodeError:
            return value
    return None


def text_values(con: duckdb.DuckDBPyConnection, relations: Iterable[str]) -> set[str]:
    """Every distinct text value in the given DuckDB relations (`select` statements)."""
    values: set[str] = set()
    for relation in relations:
        columns = [
            str(r[0])
            for r in con.execute(f"describe {relation}").fetchall()
            if str(r[1]) == "VARCHAR"
        ]
        if columns:
            listed = ", ".join(f'"{c}"' for c in columns)
            values.update(
                str(r[0])
                for r in con.execute(
                    f"select distinct v from (select unnest([{listed}]) as v from ({relation})) "
                    "where v is not null"
                ).fetchall()
            )
    return values


def check_encoding(
    con: duckdb.DuckDBPyConnection, *, server_encoding: str, relations: Iterable[str], target: str
) -> None:
    """Refuse, in one line, text the database's encoding cannot hold; before any write."""
    if server_encoding.upper() in ("UTF8", "SQL_ASCII"):
        return
    bad = unencodable(text_values(con, relations), server_encoding)
    if bad is not None:
        raise PublishError(
            f"Postgres {target} stores text in {server_encoding}, which cannot hold "
            f"{bad!r} (and maybe more of the lake's names); nothing was written. Publish to a "
            "database created with ENCODING 'UTF8' (e.g. createdb -E UTF8 -T template0 ...)."
        )
