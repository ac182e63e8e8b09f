"""The `cryptolake` application: commands in the order users need them, errors as one line.

Commands live in `lake_cmds`, `read_cmds` and `pipeline_cmds`; each parses flags, resolves
Settings, calls one library function and renders. A `CryptolakeError` becomes one `error:`
line and exit code 1, Ctrl-C one line and exit code 130; only bugs keep their traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..checks import ChecksFailed
from ..errors import CryptolakeError
from ..lake import LakePaths
from ..lock import LakeLock
from ..pipeline import RunInterrupted
from ..settings import Settings
from .options import VerboseOpt
from .render import console, err_console, print_error, setup_logging

# The order of `cryptolake --help`: the command users live in first, then the stages in
# pipeline order, then the ones that look at the lake.
COMMAND_ORDER = (
    "run",
    "ingest",
    "transform",
    "check",
    "publish",
    "status",
    "schedule",
    "report",
    "query",
    "shell",
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
    except CryptolakeError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        print_error(interrupted_message(exc))
        raise typer.Exit(130) from None


def interrupted_message(exc: KeyboardInterrupt) -> str:
    if isinstance(exc, RunInterrupted):
        where = f" during {exc.stage}" if exc.stage else ""
        return f"interrupted (Ctrl-C){where}; run {exc.run_id} is recorded as interrupted."
    return "interrupted (Ctrl-C)."


@contextmanager
def lake_lock(settings: Settings, command: str, *, reads_only: bool = False) -> Iterator[None]:
    """Hold the lake's lock, as `cryptolake run` does, so stages never overlap a run.

    A lake folder that does not exist yet has nothing to protect: the stage itself then says
    what to do (ingest creates the folder). A command that only reads the lake goes unlocked
    on a lake nobody can write.
    """
    lake = LakePaths.at(settings.lake)
    if command != "ingest" and not lake.root.exists():
        yield
        return
    with LakeLock(lake, run_id=f"`cryptolake {command}`", readers_only=reads_only):
        yield


def main() -> None:
    app()
