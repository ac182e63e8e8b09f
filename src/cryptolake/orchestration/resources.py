"""The Dagster resource carrying cryptolake's settings to the assets.

Every field left unset comes from the same `CRYPTOLAKE_*` environment as the CLI (then the
defaults), resolved in the process that runs the step. A secret (API key, Postgres DSN, a
catalog conninfo holding a password) is best left to that environment, or given as
`dagster.EnvVar("NAME")`: Dagster then shows the variable's name, never its value, and
`Settings` keeps it out of every repr, log line and error.
"""

# No `from __future__ import annotations`: pydantic reads the fields' annotations.
import os

from dagster import ConfigurableResource
from pydantic import Field

from ..secret import Secret
from ..settings import Settings


class CryptolakeResource(ConfigurableResource):  # type: ignore[type-arg]
    """cryptolake's `Settings` for the assets: field > `CRYPTOLAKE_*` environment > default."""

    lake: str | None = Field(default=None, description="Lake folder or s3://bucket/prefix.")
    catalog: str | None = Field(
        default=None, description="DuckLake catalog: sqlite:<file> or postgres:<conninfo>."
    )
    api_url: str | None = Field(default=None, description="CoinGecko API base URL.")
    api_plan: str | None = Field(default=None, description="demo or pro.")
    api_key: str | None = Field(default=None, description="CoinGecko API key (an EnvVar).")
    vs_currency: str | None = Field(default=None, description="Quote currency, e.g. usd.")
    top: str | None = Field(default=None, description="Coins by market cap: a number or all.")
    rate: float | None = Field(default=None, description="CoinGecko requests per minute.")
    history_budget: int | None = Field(
        default=None, description="History requests per history materialization."
    )
    postgres_dsn: str | None = Field(default=None, description="Publish target (an EnvVar).")
    pg_schema: str | None = Field(default=None, description="Postgres schema to publish into.")
    memory_limit: str | None = Field(default=None, description="DuckDB memory limit, e.g. 2GB.")

    def settings(self) -> Settings:
        """The settings of this step. Raises `ConfigError` for a value that is not valid."""
        flags = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if getattr(self, name) is not None
        }
        if "api_key" in flags:
            flags["api_key"] = Secret(flags["api_key"])
        given_as = {name: f"{type(self).__name__}.{name}" for name in flags}
        return Settings.resolve(env=os.environ, given_as=given_as, **flags)
