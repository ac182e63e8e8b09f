"""Settings: flag > CRYPTOLAKE_* environment > default, validation, secrets kept out of repr."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from cryptolake.errors import ConfigError
from cryptolake.secret import Secret
from cryptolake.settings import PRO_API_URL, PUBLIC_API_URL, Settings

KEY = "CG-test-key-5f3a9c"


def test_defaults_without_flags_or_environment() -> None:
    settings = Settings.resolve(env={})

    assert settings.lake == Path("lake")
    assert settings.api_url == PUBLIC_API_URL
    assert settings.api_key is None
    assert settings.api_plan == "demo"
    assert settings.vs_currency is None  # not chosen: gold takes the lake's currency
    assert settings.ingest_currency == "usd"
    assert (settings.top, settings.per_page) == (250, 250)
    assert settings.rate == 10.0
    assert settings.max_attempts == 6
    assert settings.max_retry_after == 120.0


def test_environment_overrides_defaults() -> None:
    env = {
        "CRYPTOLAKE_LAKE": "/data/lake",
        "CRYPTOLAKE_API_URL": "http://127.0.0.1:9/api/v3/",
        "CRYPTOLAKE_VS_CURRENCY": " EUR ",
        "CRYPTOLAKE_TOP": "100",
        "CRYPTOLAKE_RATE": "5.5",
        "CRYPTOLAKE_PG_SCHEMA": "market",
        "CRYPTOLAKE_FRESHNESS_HOURS": "12",
        "CRYPTOLAKE_MEMORY_LIMIT": "512MB",
    }
    settings = Settings.resolve(env=env)

    assert settings.lake == Path("/data/lake")
    assert settings.api_url == "http://127.0.0.1:9/api/v3"  # trailing slash dropped
    assert settings.vs_currency == "eur"
    assert settings.top == 100
    assert settings.rate == 5.5
    assert settings.pg_schema == "market"
    assert settings.freshness_hours == 12.0
    assert settings.memory_limit == "512MB"


def test_flags_override_environment() -> None:
    env = {"CRYPTOLAKE_TOP": "100", "CRYPTOLAKE_RATE": "5", "CRYPTOLAKE_LAKE": "/from/env"}
    settings = Settings.resolve(env=env, top=7, rate=None, lake=Path("/from/flag"))

    assert settings.top == 7
    assert settings.rate == 5.0  # None means "flag not given": the environment applies
    assert settings.lake == Path("/from/flag")


def test_blank_environment_values_are_ignored() -> None:
    settings = Settings.resolve(env={"CRYPTOLAKE_TOP": "", "CRYPTOLAKE_API_KEY": "   "})

    assert settings.top == 250
    assert settings.api_key is None


def test_lake_flag_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert Settings.resolve(env={}, lake=Path("~/lake")).lake == tmp_path / "lake"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CRYPTOLAKE_TOP": "1e3"}, "CRYPTOLAKE_TOP must be a number of coins or all, got '1e3'."),
        ({"CRYPTOLAKE_RATE": "fast"}, "CRYPTOLAKE_RATE must be a number, got 'fast'."),
        (
            {"CRYPTOLAKE_API_PLAN": "enterprise"},
            "CRYPTOLAKE_API_PLAN must be 'demo' or 'pro', got 'enterprise'.",
        ),
        (
            {"CRYPTOLAKE_RATE": "-1"},
            "CRYPTOLAKE_RATE must be a positive number of requests a minute, got -1.0.",
        ),
        (
            {"CRYPTOLAKE_MEMORY_LIMIT": "lots"},
            "CRYPTOLAKE_MEMORY_LIMIT must be an amount of memory such as 2GB or 512MiB, "
            "got 'lots'.",
        ),
        (
            {"CRYPTOLAKE_MEMORY_LIMIT": "75%"},
            "CRYPTOLAKE_MEMORY_LIMIT must be an amount of memory such as 2GB or 512MiB, got '75%'.",
        ),
        (
            {"CRYPTOLAKE_FRESHNESS_HOURS": "0"},
            "CRYPTOLAKE_FRESHNESS_HOURS must be a positive number of hours (at most 1,000,000), "
            "got 0.0.",
        ),
        (
            {"CRYPTOLAKE_POSTGRES_DSN": "host=db port"},
            "CRYPTOLAKE_POSTGRES_DSN is not a Postgres connection string: use a URI "
            "(postgresql://user@host:5432/db) or key=value pairs (host=... dbname=...).",
        ),
    ],
)
def test_invalid_environment_is_a_config_error_naming_the_variable(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.resolve(env=env)

    assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"per_page": 0}, "--per-page must be between 1 and 250, got 0."),
        ({"per_page": 251}, "--per-page must be between 1 and 250, got 251."),
        ({"top": 0}, "--top must be a number of coins (at least 1) or all, got 0."),
        ({"rate": 0.0}, "--rate must be a positive number"),
        ({"rate": -3.0}, "--rate must be a positive number"),
        ({"rate": float("nan")}, "--rate must be a positive number"),
        ({"vs_currency": "US Dollar"}, "--vs-currency must be a CoinGecko currency code"),
        ({"pg_schema": "Market-Data"}, "--pg-schema must be a lowercase SQL identifier"),
        ({"api_url": "api.coingecko.com/api/v3"}, "--api-url must be an http(s) URL"),
        ({"api_plan": "gold"}, "--api-plan must be 'demo' or 'pro'"),
    ],
)
def test_invalid_flags_are_config_errors(flags: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        Settings.resolve(env={}, **flags)


def test_a_flag_error_never_names_the_environment_variable() -> None:
    # The same bad value, set both ways: the message names where it came from.
    with pytest.raises(ConfigError) as from_flag:
        Settings.resolve(env={"CRYPTOLAKE_API_PLAN": "demo"}, api_plan="gold")
    with pytest.raises(ConfigError) as from_dsn_flag:
        Settings.resolve(env={}, postgres_dsn="host=db password=s3cret port")

    assert str(from_flag.value) == "--api-plan must be 'demo' or 'pro', got 'gold'."
    assert str(from_dsn_flag.value).startswith("--postgres is not a Postgres connection string")
    assert "s3cret" not in str(from_dsn_flag.value)


@pytest.mark.parametrize("memory", ["2GB", "512MiB", "800mb", " 1.5 GB "])
def test_memory_limits_duckdb_accepts_pass(memory: str) -> None:
    # DuckDB's own syntax; it takes no percentage and no bare number of bytes.
    assert Settings.resolve(env={"CRYPTOLAKE_MEMORY_LIMIT": memory}).memory_limit == memory.strip()


def test_a_lake_that_is_a_file_is_a_settings_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")

    with pytest.raises(ConfigError) as is_file:
        Settings.resolve(env={}, lake=afile)
    with pytest.raises(ConfigError) as under_file:
        Settings.resolve(env={"CRYPTOLAKE_LAKE": str(afile / "lake")})

    assert str(is_file.value) == (
        f"--lake {afile} is a file, not a folder: point it at a folder (a missing one is created)."
    )
    assert str(under_file.value) == (
        f"CRYPTOLAKE_LAKE={afile / 'lake'} is under a file ({afile}), not a folder: point it at "
        "a folder (a missing one is created)."
    )
    assert Settings.resolve(env={}, lake=tmp_path / "new" / "lake").lake == tmp_path / "new/lake"


def test_with_validates_again() -> None:
    settings = Settings.resolve(env={})

    assert settings.with_(top=10).top == 10
    with pytest.raises(ConfigError, match="--per-page"):
        settings.with_(per_page=1000)


def test_settings_are_frozen() -> None:
    settings = Settings.resolve(env={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.top = 5  # type: ignore[misc]


def test_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown settings: \\['topp'\\]"):
        Settings.resolve(env={}, topp=5)


def test_pro_plan_switches_the_default_url_and_header() -> None:
    demo = Settings.resolve(env={"CRYPTOLAKE_API_KEY": KEY})
    pro = Settings.resolve(env={"CRYPTOLAKE_API_KEY": KEY, "CRYPTOLAKE_API_PLAN": "PRO"})

    assert (demo.api_url, demo.api_key_header) == (PUBLIC_API_URL, "x-cg-demo-api-key")
    assert (pro.api_plan, pro.api_url) == ("pro", PRO_API_URL)
    assert pro.api_key_header == "x-cg-pro-api-key"


def test_explicit_url_wins_over_the_plan_default() -> None:
    settings = Settings.resolve(env={"CRYPTOLAKE_API_PLAN": "pro"}, api_url="http://h/api/v3")

    assert settings.api_url == "http://h/api/v3"


@pytest.mark.parametrize(
    ("env", "flags", "rate"),
    [
        ({}, {}, 10.0),
        ({"CRYPTOLAKE_API_PLAN": "pro"}, {}, 10.0),  # a plan without a key is still keyless
        ({"CRYPTOLAKE_API_KEY": KEY}, {}, 30.0),
        ({"CRYPTOLAKE_API_KEY": KEY, "CRYPTOLAKE_API_PLAN": "pro"}, {}, 250.0),
        ({"CRYPTOLAKE_API_KEY": KEY}, {"api_plan": "pro"}, 250.0),
        ({"CRYPTOLAKE_API_KEY": KEY, "CRYPTOLAKE_RATE": "12"}, {}, 12.0),
        ({"CRYPTOLAKE_API_KEY": KEY, "CRYPTOLAKE_RATE": "12"}, {"rate": 99.0}, 99.0),
    ],
)
def test_default_rate_depends_on_key_and_plan(
    env: dict[str, str], flags: dict[str, Any], rate: float
) -> None:
    assert Settings.resolve(env=env, **flags).rate == rate


def test_api_key_comes_from_the_environment_as_a_secret() -> None:
    settings = Settings.resolve(env={"CRYPTOLAKE_API_KEY": f" {KEY}\n"})

    assert isinstance(settings.api_key, Secret)
    assert settings.api_key.reveal() == KEY


def test_secrets_never_show_in_repr_or_str() -> None:
    dsn = "postgresql://etl:pg-hunter2@db.internal:5432/market"
    settings = Settings.resolve(env={"CRYPTOLAKE_API_KEY": KEY, "CRYPTOLAKE_POSTGRES_DSN": dsn})

    assert settings.postgres_dsn is not None
    assert settings.postgres_dsn.reveal() == dsn
    for shown in (repr(settings), str(settings), f"{settings}"):
        assert KEY not in shown
        assert "pg-hunter2" not in shown
    assert settings.postgres_dsn_redacted == "postgresql://etl:***@db.internal:5432/market"


def test_postgres_dsn_flag_becomes_a_secret_and_beats_the_environment() -> None:
    settings = Settings.resolve(
        env={"CRYPTOLAKE_POSTGRES_DSN": "host=env password=a"},
        postgres_dsn="host=flag password=b",
    )

    assert settings.postgres_dsn == Secret("host=flag password=b")
    assert settings.postgres_dsn_redacted == "host=flag password=***"


def test_an_empty_lake_flag_is_an_error_not_the_current_folder(tmp_path: Path) -> None:
    """`--lake "$UNSET"` must not build a lake in the current folder; an empty variable is
    unset (the default) as every CRYPTOLAKE_* variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.resolve(env={}, lake="  ")
    assert str(caught.value) == (
        "--lake is empty: give the lake's folder (or s3://bucket/prefix), or leave it out "
        "for the default, ./lake."
    )
    assert Settings.resolve(env={"CRYPTOLAKE_LAKE": ""}).lake == Path("lake")
