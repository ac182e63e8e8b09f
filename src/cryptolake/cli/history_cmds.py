"""`backfill`: a year of daily history for the top coins, then silver and gold."""

from __future__ import annotations

from typing import Annotated

import typer

from ..backfill import HistoryResult, fetch_history
from ..bronze import latest_manifest
from ..catalog import check_catalog
from ..errors import ConfigError
from ..gold import build_gold
from ..lake import LakePaths
from ..silver import build_silver
from ..transform import retry_conflicts
from .app import command, lake_lock, user_errors, verbose_after_command
from .options import (
    ApiPlanOpt,
    ApiUrlOpt,
    CatalogOpt,
    FetchCurrencyOpt,
    LakeOpt,
    RateOpt,
    SampleOpt,
    VerboseOpt,
    settings_from,
)
from .render import print_notes, print_table, progress_bars, summary_table
from .views import render_gold, render_silver, warn_sample


def render_history(result: HistoryResult) -> None:
    """The summary of a backfill or a history stage."""
    rate = f", {result.requests_per_minute:.1f} req/min" if result.requests_per_minute else ""
    print_table(
        summary_table(
            f"history run {result.run_id} ({result.requests} requests{rate})",
            ["coins", "bodies", "points", "bytes", "not found", "left", "seconds"],
            [
                [
                    result.coins,
                    result.bodies,
                    result.points,
                    result.bytes,
                    len(result.not_found),
                    result.left,
                    round(result.seconds, 1),
                ]
            ],
        )
    )
    notes = list(result.notes)
    if result.not_found:
        shown = ", ".join(result.not_found[:10])
        more = f" and {len(result.not_found) - 10} more" if len(result.not_found) > 10 else ""
        notes.append(
            f"CoinGecko does not know {len(result.not_found)} coin(s) (HTTP 404): {shown}{more}; "
            "skipped, and not asked again for a week."
        )
    if result.planned == 0:
        notes.append(
            "nothing to fetch: every coin's history has been asked for up to today (a coin "
            "CoinGecko did not know is asked again after a week, or when named in --coins)."
        )
    print_notes(notes)


@command("backfill")
def backfill_cmd(
    lake: LakeOpt = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            help="How many days back. Env: CRYPTOLAKE_HISTORY_DAYS. Default: 365 (the most "
            "the keyless API serves).",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            help="The top N coins of the latest snapshot. Env: CRYPTOLAKE_TOP. Default: 250",
        ),
    ] = None,
    coins: Annotated[
        str | None,
        typer.Option("--coins", help="Coin ids instead of the top N: bitcoin,ethereum"),
    ] = None,
    with_ohlc: Annotated[
        bool,
        typer.Option(
            "--with-ohlc",
            help="Also fetch 30 days of 4-hour OHLC candles per coin (real daily highs and "
            "lows); later runs keep them current.",
            metavar="",
        ),
    ] = False,
    fetch_only: Annotated[
        bool,
        typer.Option(
            "--fetch-only", help="Land the bodies in bronze; skip silver and gold.", metavar=""
        ),
    ] = False,
    api_url: ApiUrlOpt = None,
    api_plan: ApiPlanOpt = None,
    vs_currency: FetchCurrencyOpt = None,
    rate: RateOpt = None,
    catalog: CatalogOpt = None,
    sample: SampleOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fetch daily history (and optionally 4-hour candles) for the top coins, then build.

    Resumable: every response is committed to bronze as it arrives, so a backfill that was
    stopped asks only for what is still missing. Incremental: a coin covered up to yesterday
    is asked for the missing days only.
    """
    verbose_after_command(verbose)
    with user_errors():
        if top is not None and coins is not None:
            raise ConfigError("give --top or --coins, not both: --coins names the coins.")
        settings = settings_from(locals())
        if sample:
            warn_sample()
        if not fetch_only:
            check_catalog(settings)  # before a single request is spent
        with lake_lock(settings, "backfill"), progress_bars() as on_progress:
            result = fetch_history(
                settings,
                top=top,
                coins=coins,
                with_ohlc=with_ohlc,
                sample=sample,
                progress=on_progress,
            )
            silver = gold = None
            snapshot = latest_manifest(LakePaths.of(settings)) is not None
            if not fetch_only:
                # Whatever bronze holds that silver lacks (this backfill's bodies, a killed
                # one's, a --fetch-only one's) is built now.
                silver, gold = retry_conflicts(
                    lambda: (
                        build_silver(settings, progress=on_progress),
                        build_gold(settings, progress=on_progress) if snapshot else None,
                    ),
                    what="transform",
                )
        render_history(result)
        if silver is not None:
            render_silver(silver)
        if gold is not None:
            render_gold(gold)
        elif silver is not None:
            print_notes(
                [
                    "gold is built from snapshots and history together, and the lake has no "
                    "snapshot yet: `cryptolake run` takes one and builds gold."
                ]
            )
