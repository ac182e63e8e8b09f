"""Paging /coins/markets against a live-like loopback server: empty, short and shifting pages."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cryptolake.bronze import Manifest, read_manifests
from cryptolake.errors import ApiError, ConfigError
from cryptolake.ingest import ingest
from cryptolake.lake import LakePaths
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import CATEGORIES, GLOBAL, MARKETS_250, FakeTime, fixture_bytes
from .lakes import settings_for, silver_rows

RECORDS: list[dict[str, Any]] = json.loads(fixture_bytes(MARKETS_250))
LISTED = 17_342  # what the live API's `total` header said in 2026: the list goes on


def markets_server(
    httpserver: HTTPServer, page_body: Callable[[int, int], list[dict[str, Any]]], total: int
) -> Counter[int]:
    """Serve /coins/markets pages from `page_body(page, nth request of that page)`."""
    served: Counter[int] = Counter()

    def handle(request: Request) -> Response:
        page = int(request.args["page"])
        served[page] += 1
        body = json.dumps(page_body(page, served[page])).encode()
        return Response(
            body,
            content_type="application/json",
            headers={"total": str(total), "per-page": request.args["per_page"]},
        )

    httpserver.expect_request("/api/v3/coins/markets").respond_with_handler(handle)
    httpserver.expect_request("/api/v3/global").respond_with_data(fixture_bytes(GLOBAL))
    httpserver.expect_request("/api/v3/coins/categories").respond_with_data(
        fixture_bytes(CATEGORIES)
    )
    return served


def page_of(records: list[dict[str, Any]], page: int, per_page: int = 50) -> list[dict[str, Any]]:
    return records[(page - 1) * per_page : page * per_page]


@pytest.fixture
def api_settings(httpserver: HTTPServer, lake: Path) -> Settings:
    return Settings.resolve(
        env={}, lake=lake, api_url=httpserver.url_for("/api/v3"), rate=60_000.0, top=100,
        per_page=50,
    )  # fmt: skip


def run_ingest(settings: Settings, fake_time: FakeTime) -> Any:
    # Markets only: the recorded /global is of another day than these pages (and silver
    # would set aside a snapshot at odds with it).
    with fake_time.client(settings) as client:
        return ingest(settings, client=client, now=fake_time.now, datasets=["coins_markets"])


def test_an_empty_first_page_is_retried_not_taken_for_no_coins(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    served = markets_server(
        httpserver,
        lambda page, nth: [] if (page, nth) == (1, 1) else page_of(RECORDS, page),
        LISTED,
    )
    result = run_ingest(api_settings, fake_time)
    assert result.datasets[0].records == 100
    assert served == {1: 2, 2: 1}
    assert len([s for s in fake_time.sleeps if s > 0.01]) == 1  # one backoff, then the throttle


def test_an_empty_first_page_that_stays_empty_fails_the_ingest(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    markets_server(httpserver, lambda page, nth: [], LISTED)
    with pytest.raises(ApiError) as raised:
        run_ingest(api_settings.with_(max_attempts=3), fake_time)
    assert str(raised.value) == (
        "CoinGecko /coins/markets failed after 3 attempts; last: HTTP 200 with an empty first "
        "page (no coins at all). CoinGecko listed no coins: try again later."
    )
    (manifest,) = read_manifests(LakePaths.at(lake), status="failed")
    assert manifest.error == str(raised.value)
    assert read_manifests(LakePaths.at(lake)) == []  # nothing complete: silver sees nothing


def test_a_short_page_before_the_top_n_is_retried(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    def body(page: int, nth: int) -> list[dict[str, Any]]:
        full = page_of(RECORDS, page)
        return full[:30] if page == 2 and nth == 1 else full

    served = markets_server(httpserver, body, LISTED)
    result = run_ingest(api_settings, fake_time)
    assert served == {1: 1, 2: 2}
    assert result.datasets[0].records == 100
    build_silver(settings_for(lake))
    assert len(silver_rows(lake)) == 100


def test_a_short_page_that_stays_short_fails_rather_than_a_small_snapshot(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    markets_server(
        httpserver, lambda page, nth: page_of(RECORDS, page)[: 30 if page == 2 else 50], LISTED
    )
    with pytest.raises(ApiError) as raised:
        run_ingest(api_settings.with_(max_attempts=2), fake_time)
    assert str(raised.value) == (
        "CoinGecko /coins/markets failed after 2 attempts; last: HTTP 200 with a short page 2 "
        "(30 of 50 coins) before the top 100 were reached of the 17,342 it lists. CoinGecko "
        "may be updating its list: try again later, or ask for fewer coins (--top 80) if the "
        "list really ends there."
    )
    assert read_manifests(LakePaths.at(lake)) == []


def test_a_short_page_at_the_end_of_the_list_is_the_whole_list(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    served = markets_server(httpserver, lambda page, nth: page_of(RECORDS[:80], page), 80)
    result = run_ingest(api_settings, fake_time)
    assert served == {1: 1, 2: 1}
    assert result.datasets[0].records == 80
    assert result.notes == [
        "The API lists 80 coins, fewer than --top 100: all of them were fetched."
    ]


@pytest.mark.parametrize("top", [100, 90])
def test_a_coin_that_moves_up_between_pages_is_found_and_reported(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path, top: int
) -> None:
    # After page 1 was served, coin #51 overtook coin #50: page 2 now starts with #50 again
    # and #51 is on page 1, which was already fetched. Without a second look, #51 is lost.
    shifted = RECORDS[:49] + [RECORDS[50], RECORDS[49]] + RECORDS[51:]

    def body(page: int, nth: int) -> list[dict[str, Any]]:
        before = page == 1 and nth == 1
        return page_of(RECORDS if before else shifted, page)

    served = markets_server(httpserver, body, LISTED)
    result = run_ingest(api_settings.with_(top=top), fake_time)
    assert served == {1: 2, 2: 1}  # page 1 fetched again
    mover, repeated = RECORDS[50]["id"], RECORDS[49]["id"]
    assert result.datasets[0].records == top  # distinct coins, the real count
    assert result.notes == [
        f"ranks shifted while paging: page 2 repeated 1 coin(s) of page 1 ({repeated}); page 1 "
        f"was fetched again and 1 coin(s) that had moved up were found ({mover})."
    ]
    manifest = Manifest.from_json(Path(result.manifest_path).read_bytes())
    assert manifest.notes == result.notes
    assert [(f.page, f.refetch) for f in manifest.files if f.dataset == "coins_markets"] == [
        (1, 0),
        (2, 0),
        (1, 1),
    ]
    assert manifest.files[2].path.endswith("-p0001-r1.json")
    build_silver(settings_for(lake))
    coins = {r["coin_id"] for r in silver_rows(lake)}
    # The top N as the list stood after the shift: the mover in, never trimmed for a coin
    # it overtook (with --top 90, page 2's coins filled the room before it was found).
    assert coins == {r["id"] for r in RECORDS[:top]}
    assert mover in coins


def test_a_coin_that_cannot_be_found_is_reported_missing(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    shifted = RECORDS[:49] + [RECORDS[50], RECORDS[49]] + RECORDS[51:]
    # The re-fetched page 1 never shows the mover (the ranks keep moving).
    markets_server(
        httpserver,
        lambda page, nth: page_of(RECORDS if page == 1 else shifted, page),
        LISTED,
    )
    result = run_ingest(api_settings, fake_time)
    assert result.datasets[0].records == 99  # not 100: one coin is missing, and said so
    (note,) = result.notes
    assert note.endswith(
        "0 coin(s) that had moved up were found; 1 coin(s) may be missing from this snapshot."
    )


def test_top_all_pages_as_far_as_the_list_goes(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime, lake: Path
) -> None:
    """`--top all`: every coin the API lists; as many pages as its `total` says, the last one
    short, and the progress bar's length known once page 1 told it."""
    listed = RECORDS[:230]
    served = markets_server(httpserver, lambda page, nth: page_of(listed, page), len(listed))
    settings = api_settings.with_(top="all")
    seen: list[tuple[int, int | None]] = []
    with fake_time.client(settings) as client:
        result = ingest(
            settings,
            client=client,
            now=fake_time.now,
            datasets=["coins_markets"],
            progress=lambda p: seen.append((p.completed, p.total)),
        )
    assert served == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}  # 4 x 50 + 30: no page 6 asked
    assert result.datasets[0].records == 230
    assert seen[:2] == [(0, None), (1, 5)] and seen[-1] == (5, 5)
    assert "--top all: 230 coins of the 230 it lists, in 5 page(s) of 50." in result.notes
    manifest = Manifest.from_json(Path(result.manifest_path).read_bytes())
    assert manifest.top is None  # every coin, as asked
    assert all(not f.trimmed_ids for f in manifest.files)
    build_silver(settings_for(lake))
    assert len(silver_rows(lake)) == 230


def test_top_all_reports_listed_coins_it_did_not_see(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    # Coin #51 overtakes #50 after page 1 was served, and the re-fetches of page 1 never show
    # it (the ranks keep moving): the list has 120 coins, the pages 119 distinct ones.
    listed = RECORDS[:120]
    shifted = listed[:49] + [listed[50], listed[49]] + listed[51:]
    markets_server(
        httpserver, lambda page, nth: page_of(listed if page == 1 else shifted, page), 120
    )
    result = run_ingest(api_settings.with_(top="all"), fake_time)
    assert result.datasets[0].records == 119
    shift, total = result.notes
    assert shift.endswith("1 coin(s) may be missing from this snapshot.")
    assert total == (
        "--top all: 119 coins of the 120 it lists, in 5 page(s) of 50; 1 listed coin(s) were "
        "not seen (ranks shifted while paging, or the list changed): the next snapshot has them."
    )


def test_top_all_retries_a_page_short_before_the_listed_end(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    markets_server(
        httpserver, lambda page, nth: page_of(RECORDS, page)[: 20 if page == 2 else 50], 250
    )
    with pytest.raises(ApiError) as raised:
        run_ingest(api_settings.with_(top="all", max_attempts=2), fake_time)
    assert "a short page 2 (20 of 50 coins) before every coin was listed of the 250 it lists" in (
        str(raised.value)
    )


@pytest.mark.parametrize(("given", "expected"), [("all", "all"), ("ALL", "all"), ("120", 120)])
def test_top_takes_a_number_or_all(given: str, expected: object, lake: Path) -> None:
    assert Settings.resolve(env={}, lake=lake, top=given).top == expected
    assert Settings.resolve(env={"CRYPTOLAKE_TOP": given}, lake=lake).top == expected


@pytest.mark.parametrize("given", ["0", "-5", "most", "2.5"])
def test_top_that_is_neither_is_one_line(given: str, lake: Path) -> None:
    with pytest.raises(ConfigError, match="a number of coins"):
        Settings.resolve(env={}, lake=lake, top=given)
    with pytest.raises(ConfigError, match="CRYPTOLAKE_TOP must be a number of coins"):
        Settings.resolve(env={"CRYPTOLAKE_TOP": given}, lake=lake)
