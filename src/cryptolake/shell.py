"""`cryptolake shell`: the DuckDB CLI (from the duckdb-cli wheel) on the lake, read-only."""

from __future__ import annotations

import shutil
from importlib import util
from pathlib import Path

from .errors import CryptolakeError, LakeError
from .lake import LakePaths
from .settings import Settings

EXAMPLE_QUERIES = (
    "select * from gold.crypto_analytics_mart limit 10;",
    "select * from gold.market_segment_analysis;",
    "select day, btc_dominance_pct, advancing_coins, declining_coins from gold.market_daily;",
    "select coin_id, day, is_complete_day, close_price, daily_return_ratio, volatility_7d_ratio "
    "from gold.coin_daily where coin_id = 'bitcoin' order by day desc;",
    "select * from silver.quarantine;",
    "select snapshot_date, count(*) from silver.market_snapshots group by all order by 1;",
)


def duckdb_cli() -> Path:
    """The `duckdb` binary matching the library version: the duckdb-cli wheel's, else PATH's."""
    spec = util.find_spec("duckdb_cli")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "duckdb"
        if binary.is_file():
            return binary
    found = shutil.which("duckdb")
    if found:
        return Path(found)
    raise CryptolakeError(
        "The DuckDB CLI is not installed; run `uv sync` (it comes with the duckdb-cli package)."
    )


def shell_argv(settings: Settings, *, command: str | None = None) -> list[str]:
    """The command line that opens the lake database read-only (and runs `command`)."""
    database = LakePaths.at(settings.lake).database
    if not database.exists():
        raise LakeError(
            f"No lake database at {database}; run `cryptolake run --sample` or "
            "`cryptolake transform` first."
        )
    argv = [str(duckdb_cli()), "-readonly", str(database)]
    if command is not None:
        argv += ["-c", command]
    return argv
