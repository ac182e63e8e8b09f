"""Settings of a lake on object storage: the URL, the AWS_* environment, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from cryptolake.catalog import use_object_store
from cryptolake.errors import ConfigError
from cryptolake.lake import LakePaths
from cryptolake.objectstore import S3Config, object_store_cause
from cryptolake.settings import Settings
from cryptolake.shell import attach_sql

CATALOG = "postgres:dbname=lake host=db"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-very-secret",
    "AWS_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
}


def team(tmp_path: Path, **env: str) -> Settings:
    base = {"CRYPTOLAKE_LAKE": "s3://team-lake/markets/", "CRYPTOLAKE_CATALOG": CATALOG}
    return Settings.resolve(env=base | AWS | {"XDG_CACHE_HOME": str(tmp_path)} | env)


def test_an_s3_lake_is_its_url_and_a_local_work_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = team(tmp_path)
    assert settings.lake_url == "s3://team-lake/markets"
    assert settings.lake_location == "s3://team-lake/markets"
    assert settings.lake == tmp_path / "cryptolake" / "lakes" / "team-lake" / "markets"
    lake = LakePaths.of(settings)
    assert lake.remote and lake.location == "s3://team-lake/markets"
    assert lake.data_url == "s3://team-lake/markets/"
    assert lake.store.uri("bronze/_runs/x.json") == "s3://team-lake/markets/bronze/_runs/x.json"
    with pytest.raises(Exception, match="on object storage"):
        _ = lake.bronze  # a local-only path is refused, never silently a local folder


def test_the_flag_wins_over_the_environment_and_a_folder_stays_local(tmp_path: Path) -> None:
    env = {"CRYPTOLAKE_LAKE": "s3://team-lake/x", "CRYPTOLAKE_CATALOG": CATALOG}
    local = Settings.resolve(env=env, lake=str(tmp_path / "mine"))
    assert local.lake_url is None and local.s3 is None
    assert not LakePaths.of(local).remote


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gs://bucket/x", "uses gs://, which cryptolake cannot write"),
        ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
        ("s3://bucket/x*", "glob character"),
    ],
)
def test_a_lake_url_it_cannot_use_is_a_config_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.resolve(env={"CRYPTOLAKE_CATALOG": CATALOG}, lake=value)


def test_a_lake_on_object_storage_needs_a_catalog_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgres:<libpq conninfo>"):
        Settings.resolve(env=AWS | {"XDG_CACHE_HOME": str(tmp_path)}, lake="s3://team-lake/x")


def test_an_endpoint_without_a_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL must start with http"):
        team(tmp_path, AWS_ENDPOINT_URL="127.0.0.1:9000")


def test_a_custom_endpoint_means_path_style_and_http_when_it_says_so() -> None:
    local = S3Config.from_env(AWS)
    assert (local.host, local.use_ssl) == ("127.0.0.1:9000", False)
    aws = S3Config.from_env({k: v for k, v in AWS.items() if k != "AWS_ENDPOINT_URL"})
    assert (aws.host, aws.use_ssl, aws.describe) == (None, True, "AWS S3 (eu-west-1)")
    sql, values = local.duckdb_secret_sql()
    assert "url_style ?" in sql and "use_ssl false" in sql
    assert "path" in values and "127.0.0.1:9000" in values


def test_keys_are_never_in_a_repr_sql_text_or_a_shell_command_line(tmp_path: Path) -> None:
    settings = team(tmp_path)
    secret = AWS["AWS_SECRET_ACCESS_KEY"]
    assert settings.s3 is not None
    assert secret not in repr(settings) and secret not in repr(settings.s3)
    sql, values = settings.s3.duckdb_secret_sql()
    assert secret not in sql and secret in values  # a parameter, never SQL text
    shell = attach_sql(settings)
    assert secret not in shell and AWS["AWS_ACCESS_KEY_ID"] not in shell
    assert "getenv('AWS_SECRET_ACCESS_KEY')" in shell and "load httpfs" in shell


def test_duckdb_gets_the_secret_in_memory_only(tmp_path: Path) -> None:
    settings = team(tmp_path)
    assert settings.s3 is not None
    con = duckdb.connect()
    use_object_store(con, settings.s3)
    (name, persistent, shown), *_ = con.execute(
        "select name, persistent, secret_string from duckdb_secrets()"
    ).fetchall()
    assert (name, persistent) == ("cryptolake_s3", False)
    assert AWS["AWS_SECRET_ACCESS_KEY"] not in shown  # DuckDB redacts it too


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "When reading information for key 'x' in bucket 'b': AWS Error ACCESS_DENIED "
            "during HeadObject operation: No response body.",
            "the credentials were refused",
        ),
        (
            "When listing objects under key 'x' in bucket 'b': AWS Error NETWORK_CONNECTION "
            "during ListObjectsV2 operation: curlCode: 7, Couldn't connect to server",
            "the object store did not answer",
        ),
        (
            "IO Error: Could not establish connection error for HTTP HEAD to "
            "'http://127.0.0.1:9/b/x.parquet'",
            "the object store did not answer",
        ),
        ("HTTP Error: HTTP GET error on 'http://h/b/k' (HTTP 403)", "the credentials were refused"),
        ("NoSuchBucket: The specified bucket does not exist", "the bucket does not exist"),
    ],
)
def test_object_store_errors_name_a_cause_a_user_can_fix(message: str, cause: str) -> None:
    found = object_store_cause(message)
    assert found is not None and found[0] == cause


def test_a_duckdb_read_of_a_store_that_is_down_names_the_endpoint_and_the_fix() -> None:
    from cryptolake.duck import explain_damage, object_store_problem

    exc = duckdb.IOException(
        "IO Error: Could not connect to server error for HTTP GET to "
        "'http://127.0.0.1:5599/smoke/team/gold/coin_daily/ducklake-0190.parquet'"
    )
    assert object_store_problem(exc) == (
        "the object store did not answer (http://127.0.0.1:5599); check that it is up and "
        "that AWS_ENDPOINT_URL points at it."
    )
    assert explain_damage(exc, "otherwise").startswith("the object store did not answer")
    assert object_store_problem(duckdb.IOException("IO Error: No files found")) is None
