"""`cryptolake shell`: the DuckDB CLI (from the duckdb-cli wheel) on the lake, read-only."""

from __future__ import annotations

import os
import shutil
from importlib import util
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .catalog import LAKE, attach_options, catalog_exists, catalog_file
from .duck import quote_literal
from .errors import CryptolakeError, LakeError
from .extensions import extension_path
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


def shell_env(settings: Settings) -> dict[str, str]:
    """The environment for the shell: a Postgres catalog's password as PGPASSWORD, so that it
    never appears on a command line (`ps` shows those to every user)."""
    env = dict(os.environ)
    if settings.catalog_uri.startswith("postgres:"):
        password = conninfo_to_dict(settings.catalog_uri.removeprefix("postgres:")).get("password")
        if password:
            env["PGPASSWORD"] = str(password)
    return env


def _catalog_without_password(settings: Settings) -> str:
    uri = settings.catalog_uri
    if not uri.startswith("postgres:"):
        return uri
    parts = conninfo_to_dict(uri.removeprefix("postgres:"))
    parts.pop("password", None)
    return "postgres:" + make_conninfo(**{k: str(v) for k, v in parts.items()})


def attach_sql(settings: Settings, *, as_of: int | str | None = None) -> str:
    """SQL that loads the extensions from their wheels and attaches the lake read-only.

    What any DuckDB 1.5 client runs to read the lake (the README shows it); `USE lake` makes
    `select * from gold.crypto_analytics_mart` work unchanged. A Postgres catalog's password
    is left out: `shell_env` passes it.
    """
    statements = []
    kind = "sqlite" if catalog_file(settings) is not None else "postgres"
    for name in (kind, "ducklake", *(("httpfs",) if settings.s3 is not None else ())):
        path = extension_path(name)
        statements.append(f"install {quote_literal(str(path))}" if path else f"install {name}")
        statements.append(f"load {name}")
    if settings.s3 is not None:
        statements.append(settings.s3.cli_secret_sql())
    options = attach_options(settings, read_only=True, as_of=as_of)
    statements.append(
        f"attach {quote_literal('ducklake:' + _catalog_without_password(settings))} "
        f"as {LAKE} ({options})"
    )
    statements.append(f"use {LAKE}")
    return "; ".join(statements) + ";"


def shell_argv(
    settings: Settings, *, command: str | None = None, as_of: int | str | None = None
) -> list[str]:
    """The duckdb-cli command line with the lake attached read-only (and running `command`)."""
    if not catalog_exists(settings):
        raise LakeError(
            f"No lake catalog at {settings.catalog_redacted.removeprefix('sqlite:')}; run "
            "`cryptolake run --sample` or `cryptolake transform` first."
        )
    # The setup prints nothing (`create secret` would print a Success table).
    setup = [
        "-cmd",
        ".output /dev/null",
        "-cmd",
        attach_sql(settings, as_of=as_of),
        "-cmd",
        ".output",
    ]
    argv = [str(duckdb_cli()), *setup]
    if command is not None:
        argv += ["-c", command]
    return argv
