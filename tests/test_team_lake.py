"""A team lake: bronze and DuckLake's files on S3 (moto's server on loopback), the catalog in
the real Postgres; the whole pipeline, two writers at once, and the faults a team meets."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolake.bronze_orphans import sweep_orphans
from cryptolake.errors import CryptolakeError
from cryptolake.ingest import ingest
from cryptolake.lake import LakePaths
from cryptolake.progress import Progress
from cryptolake.replay import ReplayServer
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .clis import one_error_line, run_cli, start_cli
from .conftest import MARKETS, replay_data
from .s3 import MotoServer, TcpProxy, client, list_keys, make_bucket, read_object

pytestmark = pytest.mark.postgres

SECRET_KEY = f"s3cr3t-{uuid.uuid4().hex}"  # moto takes any key; this one must never leak
# Figures that do not depend on when a run ran (its snapshot time).
FIGURES = (
    "select * exclude (snapshot_at, last_updated_at) from gold.crypto_analytics_mart "
    "order by coin_id"
)
ROWS = (
    "select count(*) as n, count(distinct (run_id, coin_id)) as once from silver.market_snapshots"
)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@dataclass
class TeamLake:
    url: str
    bucket: str
    proxy: TcpProxy
    env: dict[str, str]

    def settings(self, **flags: Any) -> Settings:
        return Settings.resolve(env=self.env, **flags)


@pytest.fixture
def team(moto: MotoServer, pg_catalog: str, tmp_path: Path) -> Iterator[TeamLake]:
    """An empty bucket reached through a proxy the test can cut, and a Postgres catalog."""
    bucket = make_bucket(moto.endpoint)
    proxy = TcpProxy(moto.port)
    proxy.start()
    env = {
        "AWS_ENDPOINT_URL": proxy.endpoint,
        "AWS_ACCESS_KEY_ID": "team-key",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "CRYPTOLAKE_LAKE": f"s3://{bucket}/markets",
        "CRYPTOLAKE_CATALOG": pg_catalog,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    try:
        yield TeamLake(f"s3://{bucket}/markets", bucket, proxy, env)
    finally:
        proxy.stop()


def query(*args: str, env: dict[str, str] | None = None) -> list[dict[str, str]]:
    done = run_cli("query", *args, "--format", "csv", env=env)
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_the_whole_pipeline_on_a_team_lake_gives_a_local_lakes_figures(
    team: TeamLake, moto: MotoServer, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    local = str(tmp_path / "local")
    assert run_cli("run", "--sample", "--lake", local).returncode == 0
    ran = run_cli("run", "--sample", "-v", env=team.env)
    assert ran.returncode == 0, ran.stderr
    assert query(FIGURES, env=team.env) == query(FIGURES, "--lake", local)
    assert len(query(FIGURES, env=team.env)) == 50

    backfill = run_cli("backfill", "--sample", "--coins", "bitcoin", "--days", "30", env=team.env)
    assert backfill.returncode == 0, backfill.stderr
    history = "select count(*) as n from silver.coin_history_daily where coin_id = 'bitcoin'"
    assert int(query(history, env=team.env)[0]["n"]) > 0

    published = run_cli(
        "publish", "--postgres", pg_dsn, "--pg-schema", pg_schema, "-v", env=team.env
    )
    assert published.returncode == 0, published.stderr
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f"select count(*) from {pg_schema}.crypto_analytics_mart").fetchone()
    assert row is not None and row[0] == 50

    status = run_cli("status", "--json", env=team.env)
    assert status.returncode == 0, status.stderr
    assert f'"lake": "{team.url}"' in status.stdout
    assert f'"host": "{socket.gethostname()}"' in status.stdout  # who committed last
    shell = run_cli("shell", "-c", "select count(*) from gold.crypto_analytics_mart", env=team.env)
    assert shell.returncode == 0, shell.stderr
    assert "50" in shell.stdout

    keys = list_keys(moto.endpoint, f"{team.bucket}/markets")
    prefix = f"{team.bucket}/markets/"
    assert any(k.startswith(prefix + "bronze/_runs/ingest_date=") for k in keys)
    assert any(k.startswith(prefix + "bronze/coins_markets/ingest_date=") for k in keys)
    assert any(k.startswith(prefix + "bronze/coin_market_chart/") for k in keys)
    assert any(k.startswith(prefix + "silver/") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith(prefix + "_meta/runs/") for k in keys)
    # Nothing of the lake is on local disk: the work folder holds at most spill and the lock.
    work = tmp_path / "cache" / "cryptolake" / "lakes" / team.bucket / "markets"
    assert {p.name for p in work.iterdir()} <= {".lock", ".tmp"}

    # The secret key is nowhere: not in any object, the catalog, or what the CLI printed.
    assert all(SECRET_KEY not in out for out in (ran.stdout, ran.stderr, published.stderr))
    assert all(SECRET_KEY not in out for out in (status.stdout, backfill.stdout, shell.stdout))
    blobs = [read_object(moto.endpoint, k) for k in keys if not k.endswith(".parquet")]
    assert blobs and not any(SECRET_KEY.encode() in b for b in blobs)
    catalog = team.env["CRYPTOLAKE_CATALOG"].removeprefix("postgres:")
    dump = subprocess.run(["pg_dump", "-d", catalog], capture_output=True, text=True, check=True)
    assert "ducklake_snapshot" in dump.stdout and SECRET_KEY not in dump.stdout


def test_two_runs_at_once_land_both_snapshots_exactly_once(team: TeamLake) -> None:
    env = team.env | {"CRYPTOLAKE_HISTORY_BUDGET": "0", "CRYPTOLAKE_RATE": "60000"}
    with ReplayServer(replay_data(MARKETS)) as one, ReplayServer(replay_data(MARKETS)) as two:
        runs = [start_cli("run", "--api-url", s.api_url, env=env) for s in (one, two)]
        outcomes = [r.communicate(timeout=300) for r in runs]
    for run, (_, err) in zip(runs, outcomes, strict=True):
        assert run.returncode == 0, err
    (rows,) = query(ROWS, env=team.env)
    assert (rows["n"], rows["once"]) == ("200", "200")
    processed = query("select run_id from silver.processed_runs order by run_id", env=team.env)
    assert len(processed) == 2 == len({r["run_id"] for r in processed})
    check = run_cli("check", env=team.env)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_object_store_gone_mid_ingest_fails_the_run_and_the_next_run_recovers(
    team: TeamLake,
) -> None:
    with ReplayServer(replay_data(MARKETS)) as replay:
        settings = team.settings(api_url=replay.api_url, rate=60_000.0, per_page=25)

        def cut_after_two_pages(p: Progress) -> None:
            if p.stage == "ingest" and p.task == "coins_markets" and p.completed == 2:
                team.proxy.stop()

        with pytest.raises(CryptolakeError) as failed:
            ingest(settings, progress=cut_after_two_pages)
        assert team.proxy.endpoint in str(failed.value)
        assert "did not answer" in str(failed.value)

        # While it is down, the CLI says so in one line naming the endpoint.
        env = team.env | {"CRYPTOLAKE_HISTORY_BUDGET": "0"}
        flags = ("--api-url", replay.api_url, "--rate", "60000", "--per-page", "25")
        down = run_cli("run", *flags, env=env)
        assert down.returncode == 1
        line = one_error_line(down.stderr)
        assert team.proxy.endpoint in line and "did not answer" in line

        team.proxy.start()
        again = run_cli("run", *flags, env=env)
        assert again.returncode == 0, again.stderr
    (rows,) = query(ROWS, env=team.env)
    assert (rows["n"], rows["once"]) == ("100", "100")  # the dead run's two pages: not read
    # They are orphans (no manifest lists them): counted, and swept once an hour old (or
    # now, by the library) to quarantine/orphans/, where the raw bronze glob no longer sees them.
    status = run_cli("status", "--json", env=team.env)
    assert json.loads(status.stdout)["orphan_files"] == 2
    lake = LakePaths.of(settings)
    assert sweep_orphans(lake) == 2
    moved = lake.store.list_keys("quarantine/orphans/bronze/coins_markets")
    assert [k.rsplit("-", 1)[-1] for k in moved] == ["p0001.json", "p0002.json"]
    assert json.loads(run_cli("status", "--json", env=team.env).stdout)["orphan_files"] == 0


def test_an_object_store_gone_mid_transform_keeps_silver_and_the_next_run_recovers(
    team: TeamLake,
) -> None:
    settings = team.settings()
    ingest(settings, sample=True)

    def cut(p: Progress) -> None:
        if p.stage == "silver":
            team.proxy.stop()

    with pytest.raises(CryptolakeError) as failed:
        build_silver(settings, progress=cut)
    assert team.proxy.endpoint in str(failed.value)
    assert "did not answer" in str(failed.value)
    team.proxy.start()
    env = team.env | {"CRYPTOLAKE_HISTORY_BUDGET": "0"}
    again = run_cli("run", "--sample", env=env)
    assert again.returncode == 0, again.stderr
    (rows,) = query(ROWS, env=team.env)
    assert (rows["n"], rows["once"]) == ("200", "200")  # both runs, each once


def test_wrong_credentials_are_one_line_naming_the_cause(tmp_path: Path, pg_catalog: str) -> None:
    import boto3

    with MotoServer(auth_after=3) as server:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )
        iam.create_user(UserName="lake")
        iam.put_user_policy(
            UserName="lake",
            PolicyName="all",
            PolicyDocument='{"Version": "2012-10-17", "Statement": '
            '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="lake")["AccessKey"]
        bucket = make_bucket(
            server.endpoint, key_id=key["AccessKeyId"], secret=key["SecretAccessKey"]
        )
        env = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": "not-the-key",
            "CRYPTOLAKE_LAKE": f"s3://{bucket}/lake",
            "CRYPTOLAKE_CATALOG": pg_catalog,
            "XDG_CACHE_HOME": str(tmp_path),
        }
        wrong = run_cli("run", "--sample", env=env)
        assert wrong.returncode == 1
        line = one_error_line(wrong.stderr)
        assert "credentials were refused" in line and server.endpoint in line
        assert "not-the-key" not in wrong.stderr + wrong.stdout
        right = run_cli(
            "run", "--sample", env=env | {"AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        )
        assert right.returncode == 0, right.stderr


def test_a_missing_bucket_is_one_line_naming_the_fix(team: TeamLake) -> None:
    env = team.env | {"CRYPTOLAKE_LAKE": "s3://no-such-bucket-here/lake"}
    for command in (("run", "--sample"), ("status",), ("transform",)):
        done = run_cli(*command, env=env)
        assert done.returncode == 1, command
        line = one_error_line(done.stderr)
        assert "the bucket does not exist" in line and "s3://no-such-bucket-here/lake" in line


def test_a_team_lake_needs_a_catalog_of_its_own(team: TeamLake) -> None:
    env = {k: v for k, v in team.env.items() if k != "CRYPTOLAKE_CATALOG"}
    done = run_cli("status", env=env)
    assert done.returncode == 1
    assert "postgres:<libpq conninfo>" in one_error_line(done.stderr)


def test_a_catalog_keeps_to_its_lake_and_a_lost_data_file_is_one_line(
    team: TeamLake, moto: MotoServer, tmp_path: Path
) -> None:
    env = team.env | {"CRYPTOLAKE_HISTORY_BUDGET": "0"}
    assert run_cli("run", "--sample", env=env).returncode == 0
    # A forgotten --lake never writes the team's catalog full of files elsewhere.
    elsewhere = run_cli("maintain", env=env | {"CRYPTOLAKE_LAKE": str(tmp_path / "mine")})
    assert elsewhere.returncode == 1
    assert f"belongs to the lake at {team.url}" in one_error_line(elsewhere.stderr)
    assert not (tmp_path / "mine" / "silver").exists()

    s3 = client(moto.endpoint)
    for key in list_keys(moto.endpoint, f"{team.bucket}/markets/silver"):
        s3.delete_file(key)  # objects lost behind the catalog's back
    for command in (("transform",), ("run", "--sample"), ("check",)):
        done = run_cli(*command, env=env)
        assert done.returncode == 1, command
        assert "missing from the object store" in one_error_line(done.stderr), command
    as_json = run_cli("run", "--sample", "--json", env=env)
    assert as_json.returncode == 1 and "Traceback" not in as_json.stderr
    assert "missing from the object store" in json.dumps(json.loads(as_json.stdout))
