"""`cryptolake verify [--repair] [--json]`: check the whole lake, and repair it from bronze."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import CryptolakeError
from ..settings import Settings
from ..verify import VerifyReport, verify_lake
from .app import JSON_ERROR_DOCUMENTS, command, lake_lock, user_errors, verbose_after_command
from .options import (
    CatalogOpt,
    JsonOpt,
    LakeOpt,
    PgSchemaOpt,
    PostgresOpt,
    VerboseOpt,
    settings_from,
)
from .render import console, print_error, print_table, progress_bars, summary_table

RepairOpt = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Quarantine damaged runs, sweep orphans, recover lost manifests, rebuild damaged "
        "tables from bronze and publish what Postgres lacks. Without it nothing changes.",
        metavar="",
    ),
]


@command("verify")
def verify_cmd(
    lake: LakeOpt = None,
    catalog: CatalogOpt = None,
    postgres: PostgresOpt = None,
    pg_schema: PgSchemaOpt = None,
    repair: RepairOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check bronze, silver, gold and Postgres agree; exit 1 if something needs repair."""
    verbose_after_command(verbose)
    if as_json:
        try:
            settings = settings_from(locals())
            with _locked(settings, repair):
                report = verify_lake(settings, repair=repair)
        except CryptolakeError as exc:
            document = _error_document(str(exc)) | {
                "lake": str(lake) if lake else None,
                "repair": repair,
            }
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
            raise typer.Exit(1) from None
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        if not report.consistent:
            raise typer.Exit(1)
        return
    with user_errors():
        settings = settings_from(locals())
        with _locked(settings, repair), progress_bars() as on_progress:
            report = verify_lake(settings, repair=repair, progress=on_progress)
    _render(report)
    if not report.consistent:
        left = sum(1 for f in report.findings if f.blocking and not f.repaired)
        print_error(
            f"{left} problem(s) in the lake {report.lake}"
            + ("; see above." if repair else "; `cryptolake verify --repair` fixes them.")
        )
        raise typer.Exit(1)


def _locked(settings: Settings, repair: bool) -> AbstractContextManager[None]:
    """The lake lock for a repair (it writes the lake); plain verify only reads, so it
    never makes a scheduled run wait, nor waits for one."""
    return lake_lock(settings, "verify --repair") if repair else nullcontext()


def _error_document(error: str) -> dict[str, Any]:
    return {
        "lake": None,
        "repair": None,
        "consistent": False,
        "checks": [],
        "findings": [],
        "error": error,
    }


JSON_ERROR_DOCUMENTS["verify"] = lambda error, argv: _error_document(error)


def _count(n: int, what: str) -> str:
    """`1 body`, `9 bodies`, `2 data files`."""
    if n == 1:
        return f"1 {what}"
    plural = what[:-1] + "ies" if what.endswith("y") and what[-2] not in "aeiou" else what + "s"
    return f"{n:,} {plural}"


def _render(report: VerifyReport) -> None:
    print_table(
        summary_table(
            f"verify {report.lake}" + (" (repair)" if report.repair else ""),
            ["check", "checked", "problems", "seconds"],
            [
                [c.check, _count(c.checked, c.what), c.problems, round(c.seconds, 2)]
                for c in report.checks
            ],
        )
    )
    for f in report.findings:
        if not f.blocking:
            mark, then = "[dim]·[/]", f"[dim]{escape(f.fix)}[/]"
        elif f.repaired:
            mark, then = "[green]✓ repaired[/]", escape(f.fix)
        else:
            mark, then = "[red]✗[/]", f"--repair: {escape(f.fix)}"
        console.print(f"{mark} {escape(f.check)}: {escape(f.problem)} → {then}", highlight=False)
    if report.consistent:
        console.print(
            "[green]the lake is consistent[/]"
            + (" (repaired)" if any(f.repaired for f in report.findings) else ""),
            highlight=False,
        )
