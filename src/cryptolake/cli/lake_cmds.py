"""The stage commands: `ingest`, `transform`, `check` and `publish`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ..checks import ChecksFailed, quarantine_summary, run_checks
from ..gold import GoldResult, build_gold
from ..ingest import ingest
from ..publish import publish
from ..settings import Settings
from ..silver import SilverResult, build_silver
from ..status import lake_status
from ..transform import retry_conflicts
from .app import command, lake_lock, user_errors, verbose_after_command
from .options import (
    ApiPlanOpt,
    ApiUrlOpt,
    CatalogOpt,
    FetchCurrencyOpt,
    LakeOpt,
    PerPageOpt,
    PgSchemaOpt,
    PostgresOpt,
    RateOpt,
    SampleOpt,
    TopOpt,
    VerboseOpt,
    settings_from,
)
from .render import print_notes, print_table, progress_bars, summary_table
from .views import (
    render_checks,
    render_gold,
    render_ingest,
    render_publish,
    render_silver,
    warn_sample,
)


@command("ingest")
def ingest_cmd(
    lake: LakeOpt = None,
    api_url: ApiUrlOpt = None,
    api_plan: ApiPlanOpt = None,
    vs_currency: FetchCurrencyOpt = None,
    top: TopOpt = None,
    per_page: PerPageOpt = None,
    rate: RateOpt = None,
    sample: SampleOpt = False,
    catalog: CatalogOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fetch coin markets, global totals and categories from CoinGecko into bronze."""
    verbose_after_command(verbose)
    with user_errors():
        settings = settings_from(locals())
        if sample:
            warn_sample()
        with lake_lock(settings, "ingest"), progress_bars() as on_progress:
            result = ingest(settings, sample=sample, progress=on_progress)
        render_ingest(result)


class Stage(StrEnum):
    silver = "silver"
    gold = "gold"
    all = "all"


@command("transform")
def transform_cmd(
    lake: LakeOpt = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Rebuild silver from bronze alone instead of adding.", metavar=""
        ),
    ] = False,
    stage: Annotated[
        Stage, typer.Option("--stage", help="Build silver, gold, or both (then run checks).")
    ] = Stage.all,
    vs_currency: Annotated[
        str | None,
        typer.Option(
            "--vs-currency",
            help="Build gold for this quote currency. Env: CRYPTOLAKE_VS_CURRENCY. "
            "Default: the currency of the lake's latest snapshot.",
        ),
    ] = None,
    catalog: CatalogOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build silver from new bronze runs, then gold, audited by the checks before it commits."""
    verbose_after_command(verbose)
    with user_errors():
        settings = Settings.resolve(lake=lake, vs_currency=vs_currency, catalog=catalog)
        with lake_lock(settings, "transform"), progress_bars() as on_progress:

            def build() -> tuple[SilverResult | None, GoldResult | None]:
                silver = gold = None
                if stage in (Stage.silver, Stage.all):
                    silver = build_silver(settings, full_refresh=full_refresh, progress=on_progress)
                if stage in (Stage.gold, Stage.all):
                    gold = build_gold(settings, full_rebuild=full_refresh, progress=on_progress)
                return silver, gold

            silver, gold = retry_conflicts(build, what="transform")
        if silver is not None:
            render_silver(silver)
        if gold is not None:
            render_gold(gold)


@command("check")
def check_cmd(
    lake: LakeOpt = None, catalog: CatalogOpt = None, verbose: VerboseOpt = False
) -> None:
    """Run the data-quality checks on the lake as it is; exit 1 if a blocking one fails."""
    verbose_after_command(verbose)
    with user_errors():
        settings = Settings.resolve(lake=lake, catalog=catalog)
        results = run_checks(settings, raise_on_failure=False)
        render_checks(results)
        quarantined = quarantine_summary(settings)
        if quarantined:
            print_table(
                summary_table(
                    "quarantined rows (kept out of silver; see silver.quarantine)",
                    ["table", "check", "rows"],
                    [list(q) for q in quarantined],
                )
            )
        ahead = lake_status(settings, runs=0).silver_ahead_at
        if ahead is not None:
            print_notes(
                [
                    f"these checks ran on the lake's gold, which is not built from silver's "
                    f"newest snapshot ({ahead:%Y-%m-%d %H:%M %Z}): the last transform failed "
                    "(`cryptolake status` shows why) or has not run since; run "
                    "`cryptolake transform`."
                ]
            )
        failed = [r for r in results if r.blocks]
        if failed:
            raise ChecksFailed(failed)


@command("publish")
def publish_cmd(
    lake: LakeOpt = None,
    catalog: CatalogOpt = None,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Publish even if the lake did not change.", metavar=""),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write staging and mart tables to Postgres in one transaction."""
    verbose_after_command(verbose)
    with user_errors():
        settings = settings_from(locals())
        with lake_lock(settings, "publish", reads_only=True), progress_bars() as on_progress:
            result = publish(settings, force=force, progress=on_progress)
        render_publish(result)


@command("maintain")
def maintain_cmd(
    lake: LakeOpt = None, catalog: CatalogOpt = None, verbose: VerboseOpt = False
) -> None:
    """Merge small files, expire old snapshots and delete files no snapshot needs."""
    from ..maintenance import maintain

    verbose_after_command(verbose)
    with user_errors():
        settings = Settings.resolve(lake=lake, catalog=catalog)
        with lake_lock(settings, "maintain"), progress_bars() as on_progress:
            result = maintain(settings, progress=on_progress)
    files = sorted(set(result.files_before) | set(result.files_after))
    print_table(
        summary_table(
            f"maintained in {result.seconds:.1f}s: {result.describe()}",
            ["table", "files before", "files after"],
            [[t, result.files_before.get(t, 0), result.files_after.get(t, 0)] for t in files],
        )
    )
