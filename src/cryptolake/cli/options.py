"""The command line's options, declared once and shared by the commands that take them.

None means "not given": `Settings.resolve` then falls back to the CRYPTOLAKE_* environment,
then to the default. Flags take `metavar=""` so help shows no `<bool>` beside them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..settings import Settings

LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake",
        help="Lake folder, or s3://bucket/prefix for a lake on object storage (with "
        "--catalog postgres:...). Env: CRYPTOLAKE_LAKE. Default: ./lake",
    ),
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="CoinGecko API base URL including /api/v3. Env: CRYPTOLAKE_API_URL. "
        "Default: the public host (the pro host with --api-plan pro).",
    ),
]
ApiPlanOpt = Annotated[
    str | None,
    typer.Option(
        "--api-plan",
        help="Plan of CRYPTOLAKE_API_KEY: demo or pro. Env: CRYPTOLAKE_API_PLAN. Default: demo",
    ),
]
VsCurrencyOpt = Annotated[
    str | None,
    typer.Option(
        "--vs-currency",
        help="Quote currency. Env: CRYPTOLAKE_VS_CURRENCY. Default: usd for ingest; gold is "
        "built for the lake's latest snapshot's.",
    ),
]
# The currency fetched (ingest, backfill): no gold is built for another one here.
FetchCurrencyOpt = Annotated[
    str | None,
    typer.Option("--vs-currency", help="Quote currency. Env: CRYPTOLAKE_VS_CURRENCY. Default: usd"),
]


def _top_flag(value: str | None) -> str | None:
    """`--top`: a whole number or `all`, checked by the parser (a usage error, exit 2)."""
    if value is not None and value.strip().lower() != "all" and not value.strip().isdigit():
        raise typer.BadParameter(f"{value!r} is neither a number of coins nor all.")
    return value


TopOpt = Annotated[
    str | None,
    typer.Option(
        "--top",
        callback=_top_flag,
        help="How many coins, by market cap, or all (every coin listed, 70+ pages). "
        "Env: CRYPTOLAKE_TOP. Default: 250",
        metavar="<N|all>",
    ),
]
PerPageOpt = Annotated[
    int | None, typer.Option("--per-page", help="Page size, 1-250. Default: 250")
]
RateOpt = Annotated[
    float | None,
    typer.Option(
        "--rate",
        help="Request budget per minute. Env: CRYPTOLAKE_RATE. "
        "Default: 10 keyless, 30 with a demo key, 250 with a pro key.",
    ),
]
SampleOpt = Annotated[
    bool,
    typer.Option(
        "--sample",
        help="Ingest the bundled recorded CoinGecko responses over loopback (no network). "
        "Wins over --api-url. A lake holds sample or live data, never both.",
        metavar="",
    ),
]
PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",
        help="Postgres DSN (libpq URI or key=value) to publish to. Env: CRYPTOLAKE_POSTGRES_DSN. "
        "Prefer the env var when the DSN holds a password.",
        show_default=False,
    ),
]
PgSchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--pg-schema",
        help="Postgres schema to publish into. Env: CRYPTOLAKE_PG_SCHEMA. Default: cryptolake",
    ),
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="DuckLake catalog of silver and gold: sqlite:<file> or postgres:<libpq conninfo>. "
        "Env: CRYPTOLAKE_CATALOG. Default: sqlite:<lake>/catalog.sqlite",
        show_default=False,
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Read the lake as it was at this snapshot id (`cryptolake status` lists them) "
        "or ISO 8601 time. Default: the current snapshot.",
        metavar="SNAPSHOT_ID|TIME",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (and nothing else there).",
        metavar="",
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Log each request (URL without key, status, bytes, ms), retries and timings.",
        metavar="",
    ),
]

# CLI parameter -> Settings field, for the options several commands share.
SOURCE_FLAGS = {
    "lake": "lake",
    "api_url": "api_url",
    "api_plan": "api_plan",
    "vs_currency": "vs_currency",
    "top": "top",
    "per_page": "per_page",
    "rate": "rate",
    "postgres": "postgres_dsn",
    "pg_schema": "pg_schema",
    "catalog": "catalog",
    "days": "history_days",
    "history_budget": "history_budget",
}


def settings_from(params: dict[str, Any]) -> Settings:
    """Settings from a command's parameters (pass `locals()`): the shared options only."""
    return Settings.resolve(
        **{field: params[name] for name, field in SOURCE_FLAGS.items() if name in params}
    )
