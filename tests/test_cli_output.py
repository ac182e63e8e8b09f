"""Output that survives a pipe and a narrow terminal: help, one-line errors naming their
source, whole run ids, `run --json` as one document, `--verbose` request logs, an
unreachable API.

Where the width or the pipe matters the CLI runs as a real process (`run_cli`: stdout and
stderr piped, a clean environment), since its consoles read COLUMNS when they start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
from typer.testing import Result

from cryptolake.cli import app
from cryptolake.lake import LakePaths
from cryptolake.lock import LakeLock
from cryptolake.replay import ReplayServer

from .clis import invoke, one_error_line, run_cli
from .conftest import CATEGORIES, GLOBAL, MARKETS_250, fixture_bytes, replay_data

COMMANDS = list(typer.main.get_group(app).commands)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$")
KEY = "CG-test-secret-key"
RATE_FROM_ENV = "error: CRYPTOLAKE_RATE must be a positive number of requests a minute, got -1.0."
NARROW = {"COLUMNS": "40"}
# rich's log line: time (blank when it repeats), level, message, and with --verbose the source.
REQUEST_LOG = re.compile(
    r"^(?:\[\d{2}:\d{2}:\d{2}\]| {10}) INFO +GET (?P<url>\S+) -> (?P<status>\d{3}), "
    r"(?P<bytes>\d+) bytes, (?P<ms>\d+) ms(?: +\S+\.py:\d+)? *$"
)


@contextmanager
def no_cryptolake_env() -> Iterator[None]:
    """No CRYPTOLAKE_* from the developer's shell while the block runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CRYPTOLAKE_"):
                patch.delenv(name)
        yield


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def user_error(result: Result) -> str:
    """The one line of an in-process command that failed as a user error."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return one_error_line(result.stderr)


def busy_message(lake: Path) -> re.Pattern[str]:
    """The whole error line of a command on a lake whose lock this test process holds."""
    return re.compile(
        rf"The lake {re.escape(str(lake))} is busy: run test \(pid {os.getpid()} on "
        rf"{re.escape(socket.gethostname())}, since \S+\) holds "
        rf"{re.escape(str(lake / '.lock'))}\. Wait for it to finish \(or stop it\); a killed "
        r"run's lock is taken over automatically\."
    )


# --- help ------------------------------------------------------------------------------


def test_run_is_the_first_command_listed() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("╭─ Commands"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("╰"))
    listed = [line[2:].split()[0] for line in lines[start + 1 : end] if line[2:3] != " "]
    assert listed[0] == "run"
    assert sorted(listed) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [[], *[[name] for name in COMMANDS]], ids=" ".join)
def test_help_shows_no_bool_metavar(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout and "Usage: cryptolake" in result.stdout
    assert "<bool>" not in result.stdout


# --- errors are one line in a pipe and a narrow terminal -------------------------------


@pytest.mark.parametrize("env", [NARROW, {}], ids=["narrow", "piped"])
def test_an_error_is_one_line_however_narrow(lake: Path, env: dict[str, str]) -> None:
    result = run_cli("ingest", "--lake", str(lake), env=env | {"CRYPTOLAKE_RATE": "-1"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [RATE_FROM_ENV]


@pytest.mark.parametrize("env", [NARROW, {}], ids=["narrow", "piped"])
def test_an_error_longer_than_a_log_line_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    # A long lake path makes the busy message longer than the 200 columns of a pipe.
    lake = tmp_path / ("a-long-folder-name-" * 6) / "lake"
    lake.mkdir(parents=True)
    with LakeLock(LakePaths.at(lake), run_id="test"):
        result = run_cli("transform", "--lake", str(lake), env=env)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert len(line) > 200
    assert line.startswith("error: ")
    assert busy_message(lake).fullmatch(line.removeprefix("error: ")), line


# --- settings errors name the source of the bad value -----------------------------------


def test_a_bad_flag_is_named_as_the_flag(lake: Path) -> None:
    line = user_error(invoke("ingest", "--api-plan", "gold", "--lake", str(lake)))
    assert line == "error: --api-plan must be 'demo' or 'pro', got 'gold'."
    assert "CRYPTOLAKE_API_PLAN" not in line


def test_a_bad_variable_is_named_as_the_variable(lake: Path) -> None:
    result = invoke("ingest", "--lake", str(lake), env={"CRYPTOLAKE_API_PLAN": "gold"})
    assert user_error(result) == "error: CRYPTOLAKE_API_PLAN must be 'demo' or 'pro', got 'gold'."


def test_a_flag_wins_over_a_bad_variable(lake: Path, replay: ReplayServer) -> None:
    result = invoke(
        "ingest",
        "--lake",
        str(lake),
        "--api-plan",
        "demo",
        "--api-url",
        replay.api_url,
        "--rate",
        "60000",
        env={"CRYPTOLAKE_API_PLAN": "gold"},
    )
    assert result.exit_code == 0, result.output
    assert len(replay.requests) == 3


def test_a_negative_rate_names_its_source(lake: Path) -> None:
    from_env = user_error(invoke("ingest", "--lake", str(lake), env={"CRYPTOLAKE_RATE": "-1"}))
    assert from_env == RATE_FROM_ENV
    assert "--rate" not in from_env
    from_flag = user_error(invoke("ingest", "--rate", "-1", "--lake", str(lake)))
    assert from_flag == "error: --rate must be a positive number of requests a minute, got -1.0."


@pytest.mark.parametrize("command", [["transform"], ["run", "--sample"]], ids=" ".join)
def test_a_bad_memory_limit_names_the_variable(lake: Path, command: list[str]) -> None:
    result = invoke(*command, "--lake", str(lake), env={"CRYPTOLAKE_MEMORY_LIMIT": "lots"})
    assert user_error(result) == (
        "error: CRYPTOLAKE_MEMORY_LIMIT must be an amount of memory such as 2GB or 512MiB, "
        "got 'lots'."
    )


@pytest.mark.parametrize("command", [["publish"], ["run", "--sample"]], ids=" ".join)
def test_an_unparseable_dsn_names_the_variable_not_its_value(
    lake: Path, command: list[str]
) -> None:
    dsn = "host=x password=hunter2 port"
    result = invoke(*command, "--lake", str(lake), env={"CRYPTOLAKE_POSTGRES_DSN": dsn})
    line = user_error(result)
    assert line == (
        "error: CRYPTOLAKE_POSTGRES_DSN is not a Postgres connection string: use a URI "
        "(postgresql://user@host:5432/db) or key=value pairs (host=... dbname=...)."
    )
    assert "hunter2" not in result.output and "host=x" not in result.output
    assert "Cannot connect" not in line


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--api-plan", "pro"], {}, "--api-plan"),
        ([], {"CRYPTOLAKE_API_PLAN": "pro"}, "CRYPTOLAKE_API_PLAN"),
    ],
    ids=["flag", "variable"],
)
def test_the_pro_plan_without_a_key_is_refused_before_any_request(
    lake: Path, replay: ReplayServer, args: list[str], env: dict[str, str], source: str
) -> None:
    result = invoke("ingest", "--lake", str(lake), "--api-url", replay.api_url, *args, env=env)
    assert user_error(result) == (
        f"error: {source} is pro, but CRYPTOLAKE_API_KEY is not set: a pro plan needs its key. "
        "Set it, or use the demo plan (keyless works too)."
    )
    assert replay.requests == []


# --- run ids are never cut ---------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs_lake(sample_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after two `cryptolake run --sample`: the session's sample lake, run once more."""
    lake = tmp_path_factory.mktemp("output") / "lake"
    shutil.copytree(sample_lake, lake)
    with no_cryptolake_env():
        result = invoke("run", "--sample", "--quiet", "--lake", str(lake))
        assert result.exit_code == 0, result.output
    return lake


def test_status_keeps_run_ids_whole_on_a_narrow_terminal(two_runs_lake: Path) -> None:
    as_json = invoke("status", "--json", "--lake", str(two_runs_lake))
    assert as_json.exit_code == 0, as_json.output
    run_ids = [run["run_id"] for run in json.loads(as_json.stdout)["runs"]]
    assert len(run_ids) == 2 and all(len(run_id) == 23 for run_id in run_ids)
    result = run_cli("status", "--lake", str(two_runs_lake), env={"COLUMNS": "50"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for run_id in run_ids:
        assert re.search(rf"^│ {run_id} +│ manual +│ success +│", result.stdout, re.M), run_id


# --- run --json is one document, whatever happens ----------------------------------------


def run_json(lake: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`cryptolake run --json` as a process: all of stdout parses as one JSON object."""
    result = run_cli("run", "--json", "--lake", str(lake), *args)
    assert "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    assert ISO_UTC.match(document["started_at"]), document
    assert ISO_UTC.match(document["finished_at"]), document
    return result, document


def test_run_json_on_success(lake: Path) -> None:
    result, document = run_json(lake, "--sample")
    assert result.returncode == 0, result.stderr
    assert document["status"] == "success" and document["error"] is None
    assert document["sample"] is True
    assert [s["stage"] for s in document["stages"]] == [
        "ingest",
        "history",
        "transform",
        "check",
        "publish",
    ]
    assert [s["status"] for s in document["stages"]] == ["ok", "ok", "ok", "ok", "skipped"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--stages", "nope"],
            "--stages takes a comma-separated subset of ingest,history,transform,check,publish; "
            "got nope.",
        ),
        (["--per-page", "0"], "--per-page must be between 1 and 250, got 0."),
    ],
    ids=["stages", "per-page"],
)
def test_run_json_on_a_config_error(lake: Path, args: list[str], error: str) -> None:
    result, document = run_json(lake, "--sample", *args)
    assert result.returncode == 1
    assert document["status"] == "failed"
    assert document["error"] == error
    assert document["stages"] == []


def test_run_json_on_a_busy_lake(lake: Path) -> None:
    with LakeLock(LakePaths.at(lake), run_id="test"):
        result, document = run_json(lake, "--sample")
    assert result.returncode == 1
    assert document["status"] == "failed"
    assert isinstance(document["error"], str)
    assert busy_message(lake).fullmatch(document["error"]), document["error"]


# --- --verbose after the command --------------------------------------------------------


SERVED = {
    "/api/v3/coins/markets": len(fixture_bytes(MARKETS_250)),
    "/api/v3/global": len(fixture_bytes(GLOBAL)),
    "/api/v3/coins/categories": len(fixture_bytes(CATEGORIES)),
}


@dataclass(frozen=True)
class Verbose:
    result: subprocess.CompletedProcess[str]
    requests: list[str]
    origin: str  # scheme://host:port of the replay server


@pytest.fixture(scope="module")
def verbose_ingest(tmp_path_factory: pytest.TempPathFactory) -> Verbose:
    """`cryptolake ingest ... --verbose` with a demo key, against the replay server."""
    lake = tmp_path_factory.mktemp("verbose") / "lake"
    with ReplayServer(replay_data()) as replay:
        result = run_cli(
            "ingest",
            "--lake",
            str(lake),
            "--api-url",
            replay.api_url,
            "--rate",
            "60000",
            "--verbose",
            env={"CRYPTOLAKE_API_KEY": KEY},
        )
        requests = list(replay.requests)
    assert result.returncode == 0, result.stderr
    base = urlsplit(replay.api_url)
    return Verbose(result=result, requests=requests, origin=f"{base.scheme}://{base.netloc}")


def test_verbose_after_the_command_logs_requests_without_the_key(verbose_ingest: Verbose) -> None:
    result = verbose_ingest.result
    assert KEY not in result.stdout and KEY not in result.stderr
    assert [urlsplit(r).path for r in verbose_ingest.requests] == list(SERVED)
    logged = {
        urlsplit(m["url"]).path: m
        for m in map(REQUEST_LOG.match, result.stderr.splitlines())
        if m is not None
    }
    for path in ("/api/v3/global", "/api/v3/coins/categories"):
        assert logged[path]["url"] == f"{verbose_ingest.origin}{path}"
        assert logged[path]["status"] == "200"
        assert int(logged[path]["bytes"]) == SERVED[path]


def test_verbose_logs_one_line_per_request(verbose_ingest: Verbose) -> None:
    lines = verbose_ingest.result.stderr.splitlines()
    matches = [m for m in map(REQUEST_LOG.match, lines) if m is not None]
    assert [m["url"] for m in matches] == [
        f"{verbose_ingest.origin}{request}" for request in verbose_ingest.requests
    ]
    assert [m["status"] for m in matches] == ["200"] * 3
    assert [int(m["bytes"]) for m in matches] == list(SERVED.values())
    assert sum(" GET " in line for line in lines) == 3


# --- an unreachable API -----------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    result: subprocess.CompletedProcess[str]
    seconds: float
    port: int


@pytest.fixture(scope="module")
def refused_ingest(tmp_path_factory: pytest.TempPathFactory) -> Timed:
    """`cryptolake ingest` (keyless, default rate) against a loopback port nothing listens on."""
    lake = tmp_path_factory.mktemp("refused") / "lake"
    port = closed_port()
    started = time.monotonic()
    result = run_cli(
        "ingest", "--lake", str(lake), "--api-url", f"http://127.0.0.1:{port}/api/v3", timeout=60
    )
    return Timed(result=result, seconds=time.monotonic() - started, port=port)


def test_an_unreachable_api_fails_fast_with_one_line(refused_ingest: Timed) -> None:
    result = refused_ingest.result
    assert result.returncode == 1
    assert refused_ingest.seconds < 10
    assert one_error_line(result.stderr) == (
        f"error: Cannot reach CoinGecko at 127.0.0.1:{refused_ingest.port}: connection refused "
        "(nothing listens there). Check the network and --api-url; offline, "
        "`cryptolake run --sample` runs everything on recorded data."
    )
