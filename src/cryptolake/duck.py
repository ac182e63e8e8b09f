"""DuckDB connections configured the same way everywhere: UTC, bounded memory, spill in the lake."""

from __future__ import annotations

import json
import os
import pwd
import re
from collections.abc import Iterable
from pathlib import Path

import duckdb

from .lake import LakePaths
from .settings import Settings


def connect(
    settings: Settings, database: Path | str = ":memory:", *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with TimeZone UTC, the memory limit and a spill folder in the lake."""
    # DuckDB creates the spill folder itself on the first spill, so nothing is created here.
    lake = LakePaths.of(settings)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": settings.memory_limit,
        "temp_directory": str(lake.tmp),
        # Keep the results of multi-file reads in file order: deterministic builds.
        "preserve_insertion_order": True,
    }
    if settings.threads:
        config["threads"] = settings.threads
    if not os.environ.get("HOME"):
        # cron and systemd may run us without HOME; DuckDB keeps its installed extensions
        # under the home folder, so name the user's own.
        config["home_directory"] = _home_folder(lake)
    con = duckdb.connect(str(database), read_only=read_only, config=config)
    # TimeZone needs ICU loaded, which happens on connect, so it cannot go in `config`.
    con.execute("set TimeZone = 'UTC'")
    return con


def _home_folder(lake: LakePaths) -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # a uid without a passwd entry (a container's): the lake's spill folder
        return str(lake.tmp)


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def one_line(exc: Exception, *, keep_sql: bool = False) -> str:
    """DuckDB's message on one line: its lines joined, the caret under the SQL dropped, and
    the SQL it quotes (`LINE 1: ...`) too unless `keep_sql` (the user's own query)."""
    # Control characters (a damaged file's bytes quoted by the reader) never reach a terminal.
    text = "".join(c if c.isprintable() or c == "\n" else "?" for c in str(exc))
    lines = (line.strip() for line in text.splitlines())
    return " ".join(
        line
        for line in lines
        if line and set(line) != {"^"} and (keep_sql or not line.startswith("LINE "))
    )


def json_list(values: Iterable[object]) -> str:
    """A list as one JSON text, for `?::json::varchar[]` (or `boolean[]`) in SQL.

    Passing a Python list as a parameter makes DuckDB convert it item by item, trying to
    import numpy for each one when numpy is absent: 90 ms for 2,000 run ids, against 1 ms
    for one JSON string.
    """
    return json.dumps(list(values))


_DATA_FILE = re.compile(r"""["']([^"']+\.parquet)["']""")
_DAMAGE = ("cannot open file", "no such file", "footer", "magic bytes", "not a parquet", "corrupt")
# What DuckDB's Parquet reader (thrift) says of a damaged footer, without naming the file.
_UNNAMED_DAMAGE = ("don't know what type", "thrift", "invalid parquet")


def damaged_data_file(exc: Exception) -> str | None:
    """The Parquet file a DuckDB error says is missing or unreadable, if it is about one
    ("a data file" when the reader does not name it)."""
    message = str(exc)
    lowered = message.lower()
    found = _DATA_FILE.search(message)
    if found is not None and any(word in lowered for word in _DAMAGE):
        return found.group(1)
    if any(words in lowered for words in _UNNAMED_DAMAGE):
        return "a data file"
    return None


_HTTP_HOST = re.compile(r"(https?://[^/'\"\s]+)")


def object_store_problem(exc: Exception) -> str | None:
    """What went wrong with the object store a DuckDB error (from httpfs) is about, naming
    the endpoint, the cause and the fix; None when it is not about one."""
    from .objectstore import object_store_cause

    text = one_line(exc)
    host = _HTTP_HOST.search(text)
    found = object_store_cause(text) if host or "s3://" in text else None
    if found is None:
        return None
    cause, fix = found
    return f"{cause} ({host[1]}); {fix}." if host else f"{cause}; {fix}."


def explain_damage(exc: Exception, otherwise: str) -> str:
    """`otherwise`, unless `exc` is about a damaged data file or an object store that
    failed: then what to do about that."""
    if (stored := object_store_problem(exc)) is not None:
        return stored
    if damaged_data_file(exc) is None:
        return otherwise
    return (
        "a data file of the lake is missing or damaged: `cryptolake verify` finds it and "
        "`cryptolake verify --repair` rebuilds what it held from bronze."
    )
