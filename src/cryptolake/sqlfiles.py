"""Reads the project's SQL: one relation per `.sql` file, one folder per dialect and layer."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .errors import CryptolakeError


@cache
def sql_root() -> Path:
    """`sql/` of the source tree, or `cryptolake/sql` inside an installed wheel."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def load_sql(relative: str) -> str:
    """The text of `sql/<relative>`, e.g. `duckdb/silver/market_snapshots.sql`."""
    path = sql_root() / relative
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CryptolakeError(
            f"SQL file {path} is missing; reinstall cryptolake or restore it from git."
        ) from None


def sql_names(folder: str) -> list[str]:
    """Names (file stems) of the `.sql` files in `sql/<folder>`, sorted."""
    return sorted(p.stem for p in (sql_root() / folder).glob("*.sql"))
