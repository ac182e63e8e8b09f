"""The HTML report: one offline file, the gold figures as formatted, escaped names, the CLI."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cryptolake.catalog import open_lake
from cryptolake.cli import app
from cryptolake.errors import LakeError
from cryptolake.formatting import format_change, format_money, format_price, format_share
from cryptolake.gold import build_gold
from cryptolake.ingest import ingest
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.report import ReportResult, build_report
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, GLOBAL, MARKETS, LakeTemplates, fixture_bytes
from .lakes import T0, lake_db, lake_files, one_snapshot, rows_of, settings_for

NOW = T0 + timedelta(hours=3)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def build(lake: Path) -> None:
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def land_bodies(
    lake: Path, *, at: datetime, markets: bytes, global_body: bytes, categories: bytes
) -> None:
    """Like `lakes.land`, with every body given: /global and /coins/categories too."""
    data = ReplayData(
        markets=markets, bodies={"/global": global_body, "/coins/categories": categories}
    )
    with ReplayServer(data) as server:
        settings = Settings.resolve(
            env={}, lake=lake, api_url=server.api_url, rate=60_000.0, top=250
        )
        ingest(settings, now=lambda: at)


def gold(lake: Path, sql: str) -> list[dict[str, Any]]:
    con = lake_db(lake)
    try:
        con.execute("set TimeZone = 'UTC'")
        return rows_of(con, sql)
    finally:
        con.close()


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The report's default is ./report.html: each test runs in a folder of its own."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def html_of(result: ReportResult) -> str:
    return result.path.read_text(encoding="utf-8")


@pytest.fixture
def one_day(lake: Path, lake_templates: LakeTemplates) -> Path:
    """A lake with one snapshot (the recorded 2023 top 100 at T0), silver and gold built (a
    copy of the session's)."""
    return lake_templates.copy(one_snapshot, lake)


def invoke(*args: str) -> Result:
    # A wide console keeps rich from wrapping messages.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (69014, "$69,014"),
        (2007.86, "$2,007.86"),
        (0.999602, "$0.9996"),
        (0.99999, "$1.00"),
        (0.5, "$0.50"),
        (6.6e-6, "$0.0000066"),
        (6.5e-9, "$6.5e-9"),
        (0, "$0"),
        (None, "—"),
    ],
)
def test_prices_read_like_prices(value: float | None, expected: str) -> None:
    assert format_price(value) == expected


def test_amounts_changes_and_shares() -> None:
    assert format_money(1_379_724_353_509) == "$1.38T"
    assert format_money(860_240_134_078) == "$860.24B"
    assert format_money(12_500_000, "eur") == "€12.50M"
    assert format_money(912_345, "chf") == "CHF 912,345"
    assert format_change(5.03521) == "+5.04%"
    assert format_change(-3.74976) == "\u22123.75%"
    assert format_change(-0.001) == "0.00%"
    assert format_share(90.9665658179106) == "90.97%"
    assert format_share(0.001) == "<0.01%"
    assert format_share(0) == "0%"


def test_report_is_one_file_with_nothing_to_fetch(one_day: Path, in_a_scratch_folder: Path) -> None:
    before = lake_files(one_day)
    result = build_report(settings_for(one_day), now=NOW)
    assert result.path == Path("report.html")  # the current folder, not the lake
    assert (in_a_scratch_folder / "report.html").is_file()
    assert not (one_day / "report.html").exists()
    html = html_of(result)
    assert result.bytes == len(html.encode()) == result.path.stat().st_size
    assert html.startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    lowered = html.lower()
    for needle in ("<script", "<link", "<iframe", "<img", "@import", "url(", " src="):
        assert needle not in lowered, needle
    # The only URL is the SVG namespace, which is a name, not a fetch.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {SVG_NAMESPACE}
    assert html.count("<svg") >= 3  # dominance, segments, movers
    assert lake_files(one_day) == before  # read-only: the report never changes the lake


def test_report_shows_the_gold_figures(one_day: Path) -> None:
    result = build_report(settings_for(one_day), now=NOW)
    html = html_of(result)
    records = json.loads(fixture_bytes(MARKETS))
    ranked = sorted(
        (r for r in records if r["market_cap_rank"] is not None),
        key=lambda r: r["market_cap_rank"],
    )
    top = ranked[0]
    assert (result.top_coin, result.top_coin_price) == (top["name"], top["current_price"])
    assert format_price(top["current_price"]) == "$16,952"
    assert format_money(top["market_cap"]) == "$326.41B"
    assert "$16,952" in html and "$326.41B" in html
    assert result.coins == 50
    for coin in ranked[:50]:
        assert f"{coin['name']} <span" in html  # every top-50 coin has a row
    assert ranked[50]["name"] not in html.split("Top 10 categories")[0].split("Top 50")[1]

    # Every segment's share, as gold computed it.
    segments = gold(one_day, "select * from gold.market_segment_analysis")
    assert result.segment_shares == {
        s["market_cap_category"]: s["tracked_market_cap_share_pct"] for s in segments
    }
    for segment in segments:
        assert f">{format_share(segment['tracked_market_cap_share_pct'])}</td>" in html
    # Labels and bounds (USD, whatever the quote currency) come from gold.market_cap_segments.
    for label, bounds in (
        ("Large cap", "≥ $10B"),
        ("Mid cap", "$1B – $10B"),
        ("Small cap", "$100M – $1B"),
        ("Micro cap", "< $100M"),
        ("Unknown", "no market cap"),
    ):
        assert f'{label}<div class="range">{html_escape(bounds)}</div>' in html

    # The latest BTC and ETH dominance, from the recorded /global body.
    shares = json.loads(fixture_bytes(GLOBAL))["data"]["market_cap_percentage"]
    assert result.btc_dominance_pct == shares["btc"]
    assert format_share(shares["btc"]) == "37.94%"
    assert html.count("37.94%") >= 2  # the headline figure and the chart's label
    assert format_share(shares["eth"]) in html
    assert "One day of history so far" in html

    # Movers over all 100 coins of the snapshot.
    changes = [r for r in records if r["price_change_percentage_24h"] is not None]
    best = max(changes, key=lambda r: r["price_change_percentage_24h"])
    worst = min(changes, key=lambda r: r["price_change_percentage_24h"])
    assert result.best_24h is not None and result.best_24h.coin_id == best["id"]
    assert result.worst_24h is not None and result.worst_24h.coin_id == worst["id"]
    for coin in (best, worst):
        assert coin["name"] in html
        assert format_change(coin["price_change_percentage_24h"]) in html

    # Categories: the ten largest, by name.
    categories = sorted(
        json.loads(fixture_bytes(CATEGORIES)),
        key=lambda c: (c["market_cap"] is None, -(c["market_cap"] or 0), c["id"]),
    )
    for category in categories[:10]:
        assert f">{category['name']}</td>" in html
    assert f">{categories[10]['name']}</td>" not in html

    # One snapshot: no day is complete, so the year section says so and draws nothing.
    assert (result.year_start, result.year_end, result.drawdown_pct) == (None, None, {})
    year = html.split("<h2>The last 365 days")[1].split("</section>")[0]
    assert "No complete day yet" in year and "<svg" not in year

    # Freshness.
    assert (result.snapshots, result.days) == (1, 1)
    assert "2026-02-15 15:47 UTC" in html
    assert "3 h ago" in html and ">fresh<" in html


def test_an_old_snapshot_is_marked_stale(one_day: Path) -> None:
    settings = Settings.resolve(env={}, lake=one_day, freshness_hours=36)
    html = html_of(build_report(settings, now=T0 + timedelta(days=3, hours=2)))
    assert "3 days 2 h ago" in html
    assert ">stale<" in html and ">fresh<" not in html


def test_dominance_over_ten_days(lake: Path, tmp_path: Path) -> None:
    body = json.loads(fixture_bytes(GLOBAL))
    btc = [52.0 + 0.7 * day for day in range(10)]
    for day, share in enumerate(btc):
        body["data"]["market_cap_percentage"]["btc"] = share
        land_bodies(
            lake,
            at=T0 - timedelta(days=9 - day),
            markets=fixture_bytes(MARKETS),
            global_body=json.dumps(body).encode(),
            categories=fixture_bytes(CATEGORIES),
        )
    build(lake)
    result = build_report(settings_for(lake), out=tmp_path / "new" / "market.html", now=NOW)
    assert result.path == tmp_path / "new" / "market.html"
    html = html_of(result)
    assert (result.days, result.snapshots) == (10, 10)
    assert result.btc_dominance_pct == pytest.approx(btc[-1])
    assert format_share(btc[-1]) == "58.30%"
    assert "58.30%" in html
    # One point per day and series in each drawing of the chart (wide and narrow).
    assert len(re.findall(r"<title>BTC [A-Z][a-z]{2} \d+ 2026: ", html)) == 2 * 10
    assert len(re.findall(r"<title>ETH [A-Z][a-z]{2} \d+ 2026: ", html)) == 2 * 10
    assert "10 days, Feb 6 to Feb 15, 2026" in html
    assert "One day of history" not in html


def test_names_from_the_data_are_escaped(lake: Path) -> None:
    records = json.loads(fixture_bytes(MARKETS))
    evil = '<script>alert("x")</script> & Co'
    records[0]["name"] = evil
    records[0]["symbol"] = "<b>"
    records[0]["price_change_percentage_24h"] = 99.0  # also the best mover, drawn in SVG
    categories = json.loads(fixture_bytes(CATEGORIES))
    categories[0]["name"] = "<img src=x onerror=alert(1)>"
    land_bodies(
        lake,
        at=T0,
        markets=json.dumps(records).encode(),
        global_body=fixture_bytes(GLOBAL),
        categories=json.dumps(categories).encode(),
    )
    build(lake)
    result = build_report(settings_for(lake), now=NOW)
    html = html_of(result)
    assert result.top_coin == evil
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co"
    assert html.count(escaped) >= 3  # the top-50 row and both drawings of the movers chart
    assert "&lt;B&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_lake_without_gold_is_a_clear_error(lake: Path) -> None:
    with pytest.raises(LakeError, match="cryptolake run"):
        build_report(settings_for(lake))
    with open_lake(settings_for(lake)):
        pass  # the database file and its schemas, but no gold tables
    with pytest.raises(LakeError, match=r"no gold tables yet .*`cryptolake transform`"):
        build_report(settings_for(lake))
    assert not (lake / "report.html").exists() and not Path("report.html").exists()


def test_a_report_path_that_cannot_be_written_is_one_clear_error(one_day: Path) -> None:
    afile = one_day / "afile"
    afile.write_text("x")

    with pytest.raises(LakeError) as raised:
        build_report(settings_for(one_day), out=afile / "report.html")

    assert str(raised.value) == (
        f"Cannot write the report to {afile / 'report.html'}: a file is in the way, where a "
        "folder should be. Pass --out with a path you can write."
    )


def test_cli_writes_the_report(
    one_day: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.html"
    result = invoke("report", "--lake", str(one_day), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and "$16,952" in out.read_text(encoding="utf-8")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0]

    # As the README says: report.html in the current folder (the lake may be read-only).
    monkeypatch.chdir(tmp_path)
    default = invoke("report", "--lake", str(one_day))
    assert default.exit_code == 0, default.output
    assert (tmp_path / "report.html").is_file()
    assert not (one_day / "report.html").exists()


def test_cli_without_gold_exits_1_with_one_line(lake: Path) -> None:
    with open_lake(settings_for(lake)):
        pass
    result = invoke("report", "--lake", str(lake))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: The lake has no gold tables yet")
    assert "cryptolake transform" in lines[0]
    assert "Traceback" not in result.output
