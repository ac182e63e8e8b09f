"""The lake's tables as a graph: which bronze dataset, silver table and gold model each reads.

Read from the declarations and the SQL, never written out by hand: a silver table reads its
dataset's bronze bodies (`datasets.py`); a gold model reads the silver and gold tables its SQL
names, and those of the macros it calls; a Postgres table is published from the silver or
gold table of its data. The Dagster assets (and anything else drawing the lake) use it.
"""

from __future__ import annotations

import re
from functools import cache

from ..datasets import DATASETS, Dataset
from ..gold import GOLD_MODELS
from ..publish_transaction import MARTS
from ..sqlfiles import load_sql, sql_names
from ..staging import STAGING
from ..staging_history import HISTORY

_COMMENT = re.compile(r"--[^\n]*")
_TABLE = re.compile(r"\b(silver|gold)\.(\w+)")
# The silver table each Postgres staging table is loaded from (staging.py, staging_history.py).
STAGING_SOURCES = {STAGING: "market_snapshots", HISTORY: "coin_history_daily"}


def _code(sql: str) -> str:
    """The SQL without its comments (they name tables they do not read)."""
    return _COMMENT.sub("", sql)


@cache
def _macro_reads() -> dict[str, frozenset[tuple[str, str]]]:
    return {
        name: frozenset(_TABLE.findall(_code(load_sql(f"duckdb/macros/{name}.sql"))))
        for name in sql_names("duckdb/macros")
    }


@cache
def gold_reads(model: str) -> tuple[tuple[str, str], ...]:
    """The (layer, table) pairs `gold.<model>` reads, itself left out, sorted.

    Raises KeyError for a model that is not one of `GOLD_MODELS`.
    """
    if model not in GOLD_MODELS:
        raise KeyError(model)
    code = _code(load_sql(f"duckdb/gold/{model}.sql"))
    found = set(_TABLE.findall(code))
    for macro, reads in _macro_reads().items():
        if re.search(rf"\b{macro}\s*\(", code):
            found |= reads
    found.discard(("gold", model))
    return tuple(sorted(found))


def silver_source(table: str) -> Dataset:
    """The dataset whose bronze bodies silver table `table` is built from."""
    return next(d for d in DATASETS if d.silver.table == table)


def published_tables() -> dict[str, tuple[str, str]]:
    """Each table publish writes into Postgres, with the (layer, table) of the lake it copies."""
    tables = {name: ("silver", source) for name, source in STAGING_SOURCES.items()}
    return tables | {mart: ("gold", mart) for mart in MARTS}
