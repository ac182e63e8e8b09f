"""Values silver never stores: non-finite numbers and NUL characters, counted as they go.

Both come from real CoinGecko clients' bug reports. Bare `NaN` and `Infinity` tokens (Python
serialisers write them; DuckDB's JSON reader accepts them) sort above every number, so a NaN
market cap would be "large", win `arg_max` and count as an advancing coin. A `\\u0000` inside a
name is valid JSON and a valid DuckDB string, but Postgres rejects it, and with it every later
publish. So every silver table, whatever its model, gets the same treatment after its model
ran: non-finite numbers (in DOUBLE columns and in maps of them) become null, NUL characters are
removed from text, and both are counted for the run summary. (Lone UTF-16 surrogates, which
DuckDB cannot read at all, are repaired before the model runs: see silver_io.)
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

_NUMBER_TYPES = ("DOUBLE", "FLOAT")
_NUMBER_MAP_TYPES = ("MAP(VARCHAR, DOUBLE)", "MAP(VARCHAR, FLOAT)")


@dataclass(frozen=True, slots=True)
class Sanitized:
    non_finite: int = 0  # numbers that were NaN or +-Infinity, now null
    nul_chars: int = 0  # text values that held NUL characters, now without them
    bad_unicode: int = 0  # strings with a lone UTF-16 surrogate, now with U+FFFD instead

    def __add__(self, other: Sanitized) -> Sanitized:
        return Sanitized(
            self.non_finite + other.non_finite,
            self.nul_chars + other.nul_chars,
            self.bad_unicode + other.bad_unicode,
        )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [
        (_ident(str(c)), str(t))
        for c, t in con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where table_name = ? and database_name = 'temp' order by column_index",
            [table],
        ).fetchall()
    ]


def null_non_finite(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Null NaN and +-Infinity in temp table `table` (numbers, maps of them); returns how many."""
    columns = _columns(con, table)
    numbers = [c for c, t in columns if t in _NUMBER_TYPES]
    maps = [c for c, t in columns if t in _NUMBER_MAP_TYPES]
    counts = [f"count(*) filter (where not isfinite({c}))" for c in numbers] + [
        f"coalesce(sum(len(list_filter(map_values({c}), v -> not isfinite(v)))), 0)" for c in maps
    ]
    if not counts:
        return 0
    row = con.execute(f"select {' + '.join(counts)} from {table}").fetchone()
    found = int(row[0]) if row else 0
    if found:
        assignments = [f"{c} = case when isfinite({c}) then {c} end" for c in numbers] + [
            f"{c} = map_from_entries(list_transform(map_entries({c}), e -> struct_pack("
            "key := e.key, value := case when isfinite(e.value) then e.value end)))"
            for c in maps
        ]
        con.execute(f"update {table} set {', '.join(assignments)}")
    return found


def strip_nul(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Remove NUL characters from text in temp table `table`; returns the values changed.

    Run after the rows whose key holds a NUL were quarantined: stripping one could make it
    another row's key.
    """
    texts = [c for c, t in _columns(con, table) if t == "VARCHAR"]
    if not texts:
        return 0
    counts = [f"count(*) filter (where contains({c}, chr(0)))" for c in texts]
    row = con.execute(f"select {' + '.join(counts)} from {table}").fetchone()
    found = int(row[0]) if row else 0
    if found:
        assignments = [f"{c} = replace({c}, chr(0), '')" for c in texts]
        con.execute(f"update {table} set {', '.join(assignments)}")
    return found
