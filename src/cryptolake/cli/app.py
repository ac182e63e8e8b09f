"""The `cryptolake` application: commands in the order users need them, errors as one line.

Commands live in `lake_cmds`, `read_cmds` and `pipeline_cmds`; each parses flags, resolves
Settings, calls one library function and renders. A `CryptolakeError` becomes one `error:`
line and exit code 1, Ctrl-C one line and exit code 130; only bugs keep their traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..checks import ChecksFailed
from ..errors import CryptolakeError
from ..interrupts import interrupted_by
from ..lock import stage_lock
from ..pipeline import RunInterrupted
from ..settings import Settings
from .options import VerboseOpt
from .render import console, err_console, print_error, setup_logging

# The order of `cryptolake --help`: the command users live in first, then the stages in
# pipeline order, then the ones that look at the lake.
COMMAND_ORDER = (
    "run",
    "ingest",
    "backfill",
    "transform",
    "check",
    "publish",
    "status",
    "verify",
    "schedule",
    "report",
    "query",
    "shell",
    "maintain",
)


def _no_type_for_help(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # `--help` takes no value: no `<bool>` beside it
    return option


class Command(TyperCommand):
    def get_help_option(self, ctx: Any) -> Any:
        return _no_type_for_help(super().get_help_option(ctx))


class Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _no_type_for_help(super().get_help_option(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but a usage error (an unknown flag, a value of the wrong type) is one
        `error:` line and exit 2, never a box wrapped to the terminal; `--json` gets its
        document."""
        argv = list(sys.argv[1:] if args is None else args)

        def click_main(standalone: bool) -> Any:
            return super(Group, self).main(
                argv, prog_name, complete_var, standalone, windows_expand_args, **extra
            )

        if not standalone_mode:
            return click_main(False)
        try:
            code = click_main(False)
        except Exception as exc:
            message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", 1)
            if message is None:
                raise
            command = next((a for a in argv if a in COMMAND_ORDER), None)
            document = JSON_ERROR_DOCUMENTS.get(command or "")
            if document is not None and "--json" in argv:
                print(json.dumps(document(message(), argv), indent=2))
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            if message():  # (no arguments at all: the help was the answer)
                print_error(f"{message()}{where}")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else 99)


app = typer.Typer(
    name="cryptolake",
    help="Local-first crypto market lakehouse: CoinGecko -> bronze -> silver -> gold -> Postgres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


F = TypeVar("F", bound=Callable[..., Any])


def command(name: str) -> Callable[[F], F]:
    """`@app.command(name)` with this CLI's help conventions."""
    register: Callable[[F], F] = app.command(name, cls=Command)
    return register


def _version(value: bool) -> None:
    if value:
        console.print(f"cryptolake {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: VerboseOpt = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version.", metavar=""
        ),
    ] = False,
) -> None:
    """Local-first crypto market lakehouse: CoinGecko -> bronze -> silver -> gold -> Postgres."""
    setup_logging(verbose)


def verbose_after_command(verbose: bool) -> None:
    """`--verbose` works after the command too (`cryptolake run --verbose`)."""
    if verbose:
        setup_logging(True)


@contextmanager
def user_errors() -> Iterator[None]:
    """A CryptolakeError is one clear line and exit code 1, Ctrl-C one line and exit code 130;
    bugs keep their traceback."""
    from .views import render_checks

    try:
        yield
    except ChecksFailed as exc:
        render_checks(exc.failures, to=err_console)
        print_error(
            f"{len(exc.failures)} data-quality check(s) failed; the lake keeps its previous "
            "gold and nothing was published."
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        print_error(interrupted_message(exc))
        raise typer.Exit(interrupted_exit_code()) from None
    except Exception as exc:
        if interrupted_by():  # a query Ctrl-C cancelled, however it was reported
            print_error(interrupted_message(None))
            raise typer.Exit(interrupted_exit_code()) from None
        if not isinstance(exc, CryptolakeError):
            raise  # a bug: keep the traceback
        print_error(str(exc))
        raise typer.Exit(1) from None


def interrupted_message(exc: KeyboardInterrupt | None) -> str:
    """`interrupted (Ctrl-C) during transform; run … is recorded as interrupted.`"""
    how = interrupted_by() or "Ctrl-C"
    if isinstance(exc, RunInterrupted):
        where = f" during {exc.stage}" if exc.stage else ""
        return f"interrupted ({how}){where}; run {exc.run_id} is recorded as interrupted."
    return f"interrupted ({how})."


def interrupted_exit_code() -> int:
    """128 + the signal's number, as shells report it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 143 if interrupted_by() == "SIGTERM" else 130


def lake_lock(
    settings: Settings, command: str, *, reads_only: bool = False
) -> AbstractContextManager[None]:
    """Hold the lake's lock for `cryptolake <command>` (see `lock.stage_lock`)."""
    return stage_lock(
        settings,
        f"`cryptolake {command}`",
        creates_lake=command in ("ingest", "backfill"),
        reads_only=reads_only,
    )


# `cryptolake <command> --json` prints one JSON document whatever happens: for a usage error
# too. Commands with --json register how to word one here.
JSON_ERROR_DOCUMENTS: dict[str, Callable[[str, list[str]], dict[str, Any]]] = {}


# Importing the command modules registers their commands on the app.
from . import history_cmds, lake_cmds, pipeline_cmds, read_cmds, verify_cmds  # noqa: E402, F401
