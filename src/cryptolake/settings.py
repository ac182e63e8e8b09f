"""One frozen `Settings`, resolved once: CLI flag > `CRYPTOLAKE_*` environment > default."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError
from .objectstore import ObjectLocation, S3Config, is_object_url
from .secret import Secret, redact_dsn
from .setting_values import lake_path_problem, memory_limit_problem, work_folder

ApiPlan = Literal["demo", "pro"]
# `--top all` (or CRYPTOLAKE_TOP=all): every coin /coins/markets lists.
ALL_COINS = "all"
Top = int | Literal["all"]

PUBLIC_API_URL = "https://api.coingecko.com/api/v3"
# The quote currency ingest asks for when none is chosen. Gold, when none is chosen, is built
# for the currency of the lake's latest snapshot instead (see gold.resolve_currency).
DEFAULT_VS_CURRENCY = "usd"
PRO_API_URL = "https://pro-api.coingecko.com/api/v3"

# Requests per minute when --rate is not given. Keyless use is IP-limited at roughly 5-30
# calls a minute depending on load, so 10 stays clear of 429s; a Demo key allows about 30,
# a paid key 500 or more.
DEFAULT_RATE = {"keyless": 10.0, "demo": 30.0, "pro": 250.0}

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_FRESHNESS_HOURS = 1_000_000  # a century and more: tests keep 2023 data fresh


# Where a setting can come from, for messages that must name the one the user set.
FLAGS = {
    "lake": "--lake",
    "api_url": "--api-url",
    "api_plan": "--api-plan",
    "vs_currency": "--vs-currency",
    "top": "--top",
    "per_page": "--per-page",
    "rate": "--rate",
    "postgres_dsn": "--postgres",
    "pg_schema": "--pg-schema",
    "catalog": "--catalog",
    "history_budget": "--history-budget",
    "history_days": "--days",
}
ENV_VARS = {
    "lake": "CRYPTOLAKE_LAKE",
    "api_url": "CRYPTOLAKE_API_URL",
    "api_plan": "CRYPTOLAKE_API_PLAN",
    "vs_currency": "CRYPTOLAKE_VS_CURRENCY",
    "top": "CRYPTOLAKE_TOP",
    "rate": "CRYPTOLAKE_RATE",
    "pg_schema": "CRYPTOLAKE_PG_SCHEMA",
    "freshness_hours": "CRYPTOLAKE_FRESHNESS_HOURS",
    "memory_limit": "CRYPTOLAKE_MEMORY_LIMIT",
    "api_key": "CRYPTOLAKE_API_KEY",
    "postgres_dsn": "CRYPTOLAKE_POSTGRES_DSN",
    "catalog": "CRYPTOLAKE_CATALOG",
    "maintain_every": "CRYPTOLAKE_MAINTAIN_EVERY",
    "snapshot_retention_days": "CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS",
    "history_budget": "CRYPTOLAKE_HISTORY_BUDGET",
    "history_days": "CRYPTOLAKE_HISTORY_DAYS",
}
CATALOG_KINDS = ("sqlite:", "postgres:")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a stage needs to know, passed explicitly; secrets never show in repr.

    `origins` records where each setting given came from (`--top`, `CRYPTOLAKE_TOP`), so an
    error names what the user actually set.
    """

    # The lake folder. For a lake on object storage (`--lake s3://bucket/prefix`), the local
    # work folder that holds only its spill files and its per-machine lock.
    lake: Path = Path("lake")
    # `s3://bucket/prefix` when the lake is on object storage, else None.
    lake_url: str | None = None
    # How to reach the object store (from AWS_* variables); None for a local lake.
    s3: S3Config | None = field(default=None, repr=False)
    api_url: str = PUBLIC_API_URL
    api_key: Secret | None = field(default=None, repr=False)
    api_plan: ApiPlan = "demo"
    vs_currency: str | None = None  # None: not chosen (see DEFAULT_VS_CURRENCY)
    top: Top = 250  # coins by market cap, or "all" (every coin listed)
    per_page: int = 250
    rate: float = DEFAULT_RATE["keyless"]
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_attempts: int = 6
    max_retry_after: float = 120.0
    postgres_dsn: Secret | None = field(default=None, repr=False)
    pg_schema: str = "cryptolake"
    freshness_hours: float = 36.0
    memory_limit: str = "2GB"
    threads: int | None = None
    # The DuckLake catalog of silver and gold: `sqlite:<file>` or `postgres:<libpq conninfo>`
    # (may hold a password, hence a Secret). None: sqlite:<lake>/catalog.sqlite.
    catalog: Secret | None = field(default=None, repr=False)
    maintain_every: int = 28  # runs between automatic maintenance (a week at 4 a day); 0: never
    snapshot_retention_days: float = 30.0  # lake snapshots older than this are expired
    # Requests a run's `history` stage may spend on coins whose daily history has gaps (20 at
    # the keyless 10 a minute: two minutes); 0 turns the stage off. `backfill` has no budget.
    history_budget: int = 20
    history_days: int = 365  # how far back daily history reaches (the keyless API's limit)
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def named(self, name: str) -> str:
        """How to name setting `name` to the user: as they set it, else its flag or variable."""
        return self.origins.get(name) or FLAGS.get(name) or ENV_VARS.get(name) or name

    def __post_init__(self) -> None:
        n = self.named
        if not 1 <= self.per_page <= 250:
            raise ConfigError(f"{n('per_page')} must be between 1 and 250, got {self.per_page}.")
        if self.top != ALL_COINS and (not isinstance(self.top, int) or self.top < 1):
            raise ConfigError(
                f"{n('top')} must be a number of coins (at least 1) or all, got {self.top}."
            )
        if not self.rate > 0:  # also rejects nan, which would disable the throttle
            raise ConfigError(
                f"{n('rate')} must be a positive number of requests a minute, got {self.rate}."
            )
        if self.api_plan not in ("demo", "pro"):
            raise ConfigError(f"{n('api_plan')} must be 'demo' or 'pro', got {self.api_plan!r}.")
        if self.vs_currency is not None and not re.fullmatch(r"[a-z]{2,10}", self.vs_currency):
            raise ConfigError(
                f"{n('vs_currency')} must be a CoinGecko currency code such as usd or eur, "
                f"got {self.vs_currency!r}."
            )
        if self.pg_schema.startswith("pg_") or self.pg_schema == "information_schema":
            raise ConfigError(
                f"{n('pg_schema')} {self.pg_schema!r} is a Postgres system schema name; "
                "choose another, such as cryptolake."
            )
        if not _IDENTIFIER.match(self.pg_schema):
            raise ConfigError(
                f"{n('pg_schema')} must be a lowercase SQL identifier (letters, digits, _), "
                f"got {self.pg_schema!r}."
            )
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{n('api_url')} must be an http(s) URL ending in /api/v3, got {self.api_url!r}."
            )
        if problem := memory_limit_problem(self.memory_limit):
            raise ConfigError(f"{n('memory_limit')} {problem}, got {self.memory_limit!r}.")
        if not 0 < self.freshness_hours <= MAX_FRESHNESS_HOURS:
            raise ConfigError(
                f"{n('freshness_hours')} must be a positive number of hours (at most 1,000,000), "
                f"got {self.freshness_hours}."
            )
        if self.catalog is not None and not (
            self.catalog.reveal().startswith(CATALOG_KINDS)
            and self.catalog.reveal().split(":", 1)[1].strip()
        ):
            raise ConfigError(
                f"{n('catalog')} must be sqlite:<file> or postgres:<libpq conninfo> "
                "(such as postgres:dbname=lake host=db), or unset for "
                "sqlite:<lake>/catalog.sqlite."
            )
        if self.maintain_every < 0:
            raise ConfigError(
                f"{n('maintain_every')} must be 0 (never) or a number of runs, "
                f"got {self.maintain_every}."
            )
        if not 0 <= self.snapshot_retention_days <= 36_500:
            raise ConfigError(
                f"{n('snapshot_retention_days')} must be a number of days from 0 to 36,500, "
                f"got {self.snapshot_retention_days}."
            )
        if self.history_budget < 0:
            raise ConfigError(
                f"{n('history_budget')} must be 0 (no history stage) or a number of requests, "
                f"got {self.history_budget}."
            )
        if not 1 <= self.history_days <= 36_500:
            raise ConfigError(
                f"{n('history_days')} must be a number of days from 1 (365 is what the keyless "
                f"API serves), got {self.history_days}."
            )
        if self.lake_url is not None and self.s3 is None:
            # Settings made in code name the lake only: the defaults (AWS, anonymous).
            object.__setattr__(self, "s3", S3Config())
        if self.lake_url is not None and self.catalog is None:
            raise ConfigError(
                f"The lake {self.lake_url} is on object storage, so its catalog cannot be a "
                f"file beside it: give {n('catalog')} postgres:<libpq conninfo> (a team "
                "lake: many writers), or sqlite:<local file> (one machine writes)."
            )
        problem = None if self.lake_url else lake_path_problem(self.lake)
        if problem:
            given = n("lake") + ("=" if n("lake").startswith("CRYPTOLAKE_") else " ")
            raise ConfigError(
                f"{given}{self.lake} {problem}: point it at a folder (a missing one is created)."
            )
        if self.postgres_dsn is not None and not self.postgres_dsn.reveal().strip():
            raise ConfigError(
                f"{n('postgres_dsn')} is empty: give a Postgres connection string "
                "(postgresql://user@host:5432/db), or leave it unset to skip publishing."
            )
        if self.postgres_dsn is not None:
            try:
                conninfo_to_dict(self.postgres_dsn.reveal())
            except psycopg.ProgrammingError:
                # Never echo it: it may hold a password.
                raise ConfigError(
                    f"{n('postgres_dsn')} is not a Postgres connection string: use a URI "
                    "(postgresql://user@host:5432/db) or key=value pairs (host=... dbname=...)."
                ) from None

    @property
    def top_coins(self) -> int | None:
        """How many coins to take by market cap; None for all of them."""
        return None if self.top == ALL_COINS else int(self.top)

    @property
    def ingest_currency(self) -> str:
        """The quote currency ingest asks CoinGecko for."""
        return self.vs_currency or DEFAULT_VS_CURRENCY

    @property
    def lake_location(self) -> str:
        """The lake as messages name it: its folder, or its `s3://` URL."""
        return self.lake_url or str(self.lake)

    @property
    def catalog_uri(self) -> str:
        """The DuckLake catalog: `sqlite:<absolute file>` or `postgres:<conninfo>`."""
        if self.catalog is None:
            return f"sqlite:{Path(self.lake).expanduser().resolve() / 'catalog.sqlite'}"
        kind, _, where = self.catalog.reveal().partition(":")
        if kind == "sqlite":
            return f"sqlite:{Path(where.strip()).expanduser().resolve()}"
        return f"{kind}:{where.strip()}"

    @property
    def catalog_redacted(self) -> str:
        """The catalog as messages may show it (a postgres password blanked)."""
        uri = self.catalog_uri
        return (
            "postgres:" + redact_dsn(uri[len("postgres:") :])
            if uri.startswith("postgres:")
            else uri
        )

    @property
    def api_key_header(self) -> str:
        return "x-cg-pro-api-key" if self.api_plan == "pro" else "x-cg-demo-api-key"

    @property
    def postgres_dsn_redacted(self) -> str | None:
        return None if self.postgres_dsn is None else redact_dsn(self.postgres_dsn.reveal())

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        given_as: Mapping[str, str] | None = None,
        **flags: Any,
    ) -> Settings:
        """Settings from CLI flags (None = not given), then the environment, then defaults.

        `given_as` names the values given in `flags` for messages when they are not CLI
        flags (a Dagster resource's fields, say); by default they are named as flags.
        """
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = set(flags) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
        names = FLAGS if given_as is None else {**FLAGS, **given_as}
        origins = {k: names[k] for k in values if k in names}
        if isinstance(values.get("lake"), str) and not values["lake"].strip():
            # Path("") is the current folder: `--lake "$UNSET"` would build a lake there.
            raise ConfigError(
                f"{names['lake']} is empty: give the lake's folder (or s3://bucket/prefix), "
                "or leave it out for the default, ./lake."
            )
        if isinstance(values.get("top"), str):
            try:
                values["top"] = parse_top(values["top"])
            except ValueError:
                raise ConfigError(
                    f"{names['top']} must be a number of coins or all, got {values['top']!r}."
                ) from None
        for name in ("api_plan", "vs_currency"):  # as the environment's: USD is usd
            if isinstance(values.get(name), str):
                values[name] = values[name].strip().lower()

        def from_env(name: str, var: str, convert: Any = str) -> None:
            raw = env.get(var)
            if name in values or raw is None or raw.strip() == "":
                return
            try:
                values[name] = convert(raw.strip())
            except ValueError:
                kind = {
                    int: "a whole number",
                    float: "a number",
                    parse_top: "a number of coins or all",
                }.get(convert, "valid")
                raise ConfigError(f"{var} must be {kind}, got {raw!r}.") from None
            origins[name] = var

        from_env("lake", "CRYPTOLAKE_LAKE")
        from_env("api_url", "CRYPTOLAKE_API_URL")
        from_env("api_plan", "CRYPTOLAKE_API_PLAN", str.lower)
        from_env("vs_currency", "CRYPTOLAKE_VS_CURRENCY", str.lower)
        from_env("top", "CRYPTOLAKE_TOP", parse_top)
        from_env("rate", "CRYPTOLAKE_RATE", float)
        from_env("pg_schema", "CRYPTOLAKE_PG_SCHEMA")
        from_env("freshness_hours", "CRYPTOLAKE_FRESHNESS_HOURS", float)
        from_env("memory_limit", "CRYPTOLAKE_MEMORY_LIMIT")
        # Secrets come from the environment only (a flag would land in shell history and ps).
        from_env("api_key", "CRYPTOLAKE_API_KEY", Secret)
        if "postgres_dsn" in values and isinstance(values["postgres_dsn"], str):
            values["postgres_dsn"] = Secret(values["postgres_dsn"])
        from_env("postgres_dsn", "CRYPTOLAKE_POSTGRES_DSN", Secret)
        if isinstance(values.get("catalog"), str):
            values["catalog"] = Secret(values["catalog"])
        from_env("catalog", "CRYPTOLAKE_CATALOG", Secret)
        from_env("maintain_every", "CRYPTOLAKE_MAINTAIN_EVERY", int)
        from_env("snapshot_retention_days", "CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS", float)
        from_env("history_budget", "CRYPTOLAKE_HISTORY_BUDGET", int)
        from_env("history_days", "CRYPTOLAKE_HISTORY_DAYS", int)
        if isinstance(values.get("api_key"), str):
            values["api_key"] = Secret(values["api_key"])

        plan = values.get("api_plan", "demo")
        if "api_url" not in values:
            values["api_url"] = PRO_API_URL if plan == "pro" else PUBLIC_API_URL
        values["api_url"] = values["api_url"].rstrip("/")
        if "rate" not in values:
            tier = "keyless" if not values.get("api_key") else plan
            values["rate"] = DEFAULT_RATE[tier]
        if is_object_url(values.get("lake")):
            location = ObjectLocation.parse(values["lake"], setting=origins.get("lake", "--lake"))
            values["lake_url"] = location.url
            values["lake"] = work_folder(location)
            values["s3"] = S3Config.from_env(env)
        elif "lake" in values:
            values["lake"] = Path(values["lake"]).expanduser()
        return cls(**values, origins=origins)


def parse_top(text: str) -> Top:
    """`250` or `all` (any case); ValueError for anything else."""
    value = text.strip().lower()
    return "all" if value == ALL_COINS else int(value)
