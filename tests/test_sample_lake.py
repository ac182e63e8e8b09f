"""The bundled sample never mixes with live data, and is flagged as sample wherever it shows.

`--sample` replays recorded 2023-01-08 CoinGecko responses. A lake holds one or the other:
ingest refuses to mix them either way; silver and gold carry `is_sample`; `status` and the
report say "sample data from <date>", never "fresh".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptolake.bronze import read_manifests
from cryptolake.lake import LakePaths
from cryptolake.replay import ReplayServer

from .clis import invoke, one_error_line
from .conftest import MARKETS, replay_data
from .lakes import lake_db


def lake_rows(lake: Path, sql: str) -> list[tuple[object, ...]]:
    with lake_db(lake) as con:
        return con.execute(sql).fetchall()


def test_sample_rows_are_flagged_in_silver_and_gold(sample_lake: Path) -> None:
    for table in ("silver.market_snapshots", "silver.global_snapshots"):
        assert lake_rows(sample_lake, f"select is_sample, count(*) from {table} group by 1") == [
            (True, {"silver.market_snapshots": 100, "silver.global_snapshots": 1}[table])
        ]
    assert lake_rows(sample_lake, "select distinct is_sample from gold.market_daily") == [(True,)]
    assert lake_rows(sample_lake, "select distinct is_sample from gold.crypto_analytics_mart") == [
        (True,)
    ]


def test_live_rows_are_not_flagged(lake: Path) -> None:
    with ReplayServer(replay_data(MARKETS)) as live_api:  # a consistent 2023 snapshot
        result = invoke(
            "run",
            "--lake",
            str(lake),
            "--api-url",
            live_api.api_url,
            "--rate",
            "60000",
            env={"CRYPTOLAKE_HISTORY_BUDGET": "0"},  # the replay has no history: all 404s
        )

    assert result.exit_code == 0, result.output
    assert lake_rows(lake, "select distinct is_sample from silver.market_snapshots") == [(False,)]
    assert lake_rows(lake, "select distinct is_sample from gold.market_daily") == [(False,)]


def test_sample_data_is_refused_in_a_live_lake(replay: ReplayServer, lake: Path) -> None:
    live = invoke("ingest", "--lake", str(lake), "--api-url", replay.api_url, "--rate", "60000")
    assert live.exit_code == 0, live.output

    sample = invoke("ingest", "--sample", "--lake", str(lake))

    assert sample.exit_code == 1
    assert one_error_line(sample.stderr) == (
        f"error: The lake {lake} holds live CoinGecko data; --sample would mix recorded 2023 "
        "prices into it. Give the sample a lake of its own: --lake lake-sample."
    )
    assert [m.source for m in read_manifests(LakePaths.at(lake))] == ["api"]


def test_live_data_is_refused_in_a_sample_lake(
    sample_lake: Path, replay: ReplayServer, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake)

    live = invoke("run", "--lake", str(lake), "--api-url", replay.api_url, "--rate", "60000")

    assert live.exit_code == 1
    assert one_error_line(live.stderr) == (
        f"error: The lake {lake} holds the bundled sample data; live data would mix with it. "
        "Use another lake for live runs (--lake), or delete this one."
    )
    assert replay.requests == []
    assert {m.source for m in read_manifests(LakePaths.at(lake))} == {"sample"}


def test_sample_says_which_url_it_ignored(
    sample_lake: Path, replay: ReplayServer, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake)

    result = invoke("ingest", "--sample", "--lake", str(lake), "--api-url", replay.api_url)

    assert result.exit_code == 0, result.output
    assert (
        f"note: --sample wins over --api-url: the bundled recorded responses were replayed; "
        f"{replay.api_url} was not asked." in result.stderr
    )
    assert replay.requests == []


def test_status_and_report_say_sample_not_fresh(sample_lake: Path, tmp_path: Path) -> None:
    status = invoke("status", "--lake", str(sample_lake), "--json")
    text = invoke("status", "--lake", str(sample_lake))
    report = invoke("report", "--lake", str(sample_lake), "--out", str(tmp_path / "r.html"))

    assert status.exit_code == text.exit_code == report.exit_code == 0, report.output
    assert json.loads(status.stdout)["sample"] is True
    assert "sample data from 2023-01-08" in text.stdout
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "sample data from 2023-01-08" in html
    assert '<span class="badge sample">sample</span>' in html
    assert '<span class="badge fresh">' not in html
