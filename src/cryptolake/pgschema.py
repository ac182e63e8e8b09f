"""The Postgres side's schema: DDL from `sql/postgres/`, evolved in place, and its encoding.

Tables are created from their DDL file when missing. When one exists from an older cryptolake,
its columns are compared with the DDL's (dlt's `_build_schema_update_sql` is the model): a new
column is added (nullable), a column the lake no longer writes keeps its data but loses NOT
NULL, so `insert ... by name` works either way and no consumer's schema needs dropping by
hand. The DDL's column types are read back from Postgres itself (the statement is run once on
a temporary table), so nothing parses SQL here.

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


def evolve_table(
    con: duckdb.DuckDBPyConnection, *, schema: str, name: str, create: str
) -> list[str]:
    """Make `schema.name` take every column of its DDL statement `create`; returns the changes.

    Runs in DuckDB's current Postgres transaction, right after `create` (so the table exists).
    Raises PublishError for a column whose type changed: that needs a person to decide.
    """
    probe = f"pg_temp.cryptolake_ddl_{name}"
    pg_execute(con, _CREATE_TABLE.sub(f"create temporary table {probe}", create, count=1))
    try:
        wanted = _columns(con, probe)
    finally:
        pg_execute(con, f"drop table {probe}")
    existing = _columns(con, f"{schema}.{name}")
    changes = []
    for column, (kind, _) in wanted.items():
        if column not in existing:
            changes.append(f"alter table {schema}.{name} add column {column} {kind}")
        elif existing[column][0] != kind:
            raise PublishError(
                f"Postgres column {schema}.{name}.{column} is {existing[column][0]}, but this "
                f"cryptolake writes {kind}: rename or drop that column (alter table "
                f"{schema}.{name} ...) and publish again."
            )
    for column, (_, not_null) in existing.items():
        if column not in wanted and not_null:
            changes.append(f"alter table {schema}.{name} alter column {column} drop not null")
    if changes:
        pg_execute(con, "; ".join(changes))
        log.info("evolved %s.%s: %s", schema, name, "; ".join(changes))
    return changes


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
