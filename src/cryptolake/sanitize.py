"""Values silver never stores: non-finite numbers and NUL characters, counted as they go.

Both come from real CoinGecko clients' bug reports. Bare `NaN` and `Infinity` tokens (Python
serialisers write them; DuckDB's JSON reader accepts them) sort above every number, so a NaN
market cap would be "large", win `arg_max` and count as an advancing coin. A `\\u0000` inside a
name is valid JSON and a valid DuckDB string, but Postgres rejects it, and with it every later
publish. So every silver table, whatever its model, gets the same treatment after its model
ran: non-finite numbers (in DOUBLE columns and in maps of them) become null, NUL characters are
removed from text, and both are counted for the run summary.
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

    def __add__(self, other: Sanitized) -> Sanitized:
        return Sanitized(self.non_finite + other.non_finite, self.nul_chars + other.nul_chars)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sanitize(con: duckdb.DuckDBPyConnection, table: str) -> Sanitized:
    """Null non-finite numbers and strip NUL from text in temp table `table`, in place."""
    columns = con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where table_name = ? and database_name = 'temp' order by column_index",
        [table],
    ).fetchall()
    numbers = [_ident(c) for c, t in columns if t in _NUMBER_TYPES]
    maps = [_ident(c) for c, t in columns if t in _NUMBER_MAP_TYPES]
    texts = [_ident(c) for c, t in columns if t == "VARCHAR"]
    if not (numbers or maps or texts):
        return Sanitized()
    non_finite = [f"count(*) filter (where not isfinite({c}))" for c in numbers] + [
        f"coalesce(sum(len(list_filter(map_values({c}), v -> not isfinite(v)))), 0)" for c in maps
    ]
    nul_chars = [f"count(*) filter (where contains({c}, chr(0)))" for c in texts]
    row = con.execute(
        f"select {' + '.join(non_finite) or '0'}, {' + '.join(nul_chars) or '0'} from {table}"
    ).fetchone()
    found = Sanitized(int(row[0]), int(row[1])) if row else Sanitized()
    if found.non_finite:
        assignments = [f"{c} = case when isfinite({c}) then {c} end" for c in numbers] + [
            f"{c} = map_from_entries(list_transform(map_entries({c}), e -> struct_pack("
            "key := e.key, value := case when isfinite(e.value) then e.value end)))"
            for c in maps
        ]
        con.execute(f"update {table} set {', '.join(assignments)}")
    if found.nul_chars:
        assignments = [f"{c} = replace({c}, chr(0), '')" for c in texts]
        con.execute(f"update {table} set {', '.join(assignments)}")
    return found
