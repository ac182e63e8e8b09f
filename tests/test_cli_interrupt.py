"""Ctrl-C during `cryptolake run` as a real process: exit 130, one line, the run recorded.

The API is a loopback server whose /coins/markets never answers until the test lets it, so
SIGINT always lands while ingest is waiting on the network.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .clis import one_error_line, run_cli, start_cli


@dataclass
class StallingApi:
    """A loopback API whose every request waits for `release` (then answers 503)."""

    api_url: str
    requested: threading.Event
    release: threading.Event


@pytest.fixture
def stalling_api() -> Iterator[StallingApi]:
    """A stalling API on 127.0.0.1; its blocked handlers are released in teardown."""
    requested, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.set()
            release.wait(60)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield StallingApi(f"http://127.0.0.1:{server.server_port}/api/v3", requested, release)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def interrupt_run(lake: Path, api: StallingApi, *flags: str) -> tuple[int, str, str]:
    """Start `run` against the stalling API, SIGINT it once its request is in flight."""
    proc = start_cli(
        "run", "--lake", str(lake), "--api-url", api.api_url, *flags, env={"COLUMNS": "200"}
    )
    try:
        deadline = time.monotonic() + 60
        while not api.requested.wait(0.05):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never asked the API"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, out, err


def lake_status(lake: Path) -> dict[str, Any]:
    """`cryptolake status --json` of the lake."""
    status = run_cli("status", "--json", "--lake", str(lake))
    assert status.returncode == 0, status.stderr
    document: dict[str, Any] = json.loads(status.stdout)
    return document


def run_records(lake: Path) -> list[dict[str, Any]]:
    """The lake's run records in `_meta/runs/`, oldest first (two runs may start in the same
    second: their ids then sort by their random part, so sort by the start time itself)."""
    records = [json.loads(p.read_text()) for p in (lake / "_meta" / "runs").glob("*.json")]
    return sorted(records, key=lambda r: (r["started_at"], r["run_id"]))


def stage_rows(out: str) -> dict[str, str]:
    """Stage name -> status, read from the stage table `run` prints."""
    rows = re.findall(r"^│ (\w+)\s+│ (\w+)\s+│", out, flags=re.MULTILINE)
    return {stage: status for stage, status in rows if stage != "stage"}


def test_ctrl_c_during_ingest_exits_130_and_records_the_run_interrupted(
    lake: Path, stalling_api: StallingApi
) -> None:
    code, out, err = interrupt_run(lake, stalling_api)

    assert code == 130, err
    status = lake_status(lake)
    (run,) = status["runs"]
    run_id = run["run_id"]
    assert one_error_line(err) == (
        f"error: interrupted (Ctrl-C) during ingest; run {run_id} is recorded as interrupted."
    )
    assert "KeyboardInterrupt" not in err
    assert (run["status"], run["error"]) == ("interrupted", "interrupted (Ctrl-C)")
    (record,) = run_records(lake)
    assert (record["run_id"], record["status"]) == (run_id, "interrupted")
    assert [(s["stage"], s["status"]) for s in record["stages"]] == [
        ("ingest", "interrupted"),
        ("history", "not_run"),
        ("transform", "not_run"),
        ("check", "not_run"),
        ("publish", "not_run"),
    ]
    assert out.splitlines()[0].startswith(f"run {run_id}: interrupted in ")
    assert stage_rows(out) == {
        "ingest": "interrupted",
        "history": "not_run",
        "transform": "not_run",
        "check": "not_run",
        "publish": "not_run",
    }
    # The half-fetched bronze run is closed as failed, never left pending.
    bronze = status["bronze"]
    assert (bronze["complete_runs"], bronze["failed_runs"], bronze["pending_runs"]) == (0, 1, 0)


def test_ctrl_c_with_json_prints_one_interrupted_document(
    lake: Path, stalling_api: StallingApi
) -> None:
    code, out, err = interrupt_run(lake, stalling_api, "--json")

    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    document = json.loads(out)  # the whole of stdout is one document
    (record,) = run_records(lake)
    assert (document["run_id"], document["status"]) == (record["run_id"], "interrupted")
    assert record["status"] == "interrupted"
    assert document["error"] == (
        f"interrupted (Ctrl-C) during ingest; run {record['run_id']} is recorded as interrupted."
    )
    assert [(s["stage"], s["status"]) for s in document["stages"]] == [
        ("ingest", "interrupted"),
        ("history", "not_run"),
        ("transform", "not_run"),
        ("check", "not_run"),
        ("publish", "not_run"),
    ]
    for key in ("started_at", "finished_at"):
        assert "T" in document[key]
        assert datetime.fromisoformat(document[key]).utcoffset() is not None
    assert document["started_at"] <= document["finished_at"]


def test_interrupted_run_leaves_the_lake_unlocked(lake: Path, stalling_api: StallingApi) -> None:
    code, _, err = interrupt_run(lake, stalling_api)
    assert code == 130, err

    after = run_cli("run", "--sample", "--lake", str(lake), env={"COLUMNS": "200"})

    assert after.returncode == 0, after.stderr
    assert after.stderr.count("error:") == 0
    assert "took over the lock" not in after.stdout + after.stderr  # it was released, not stale
    assert stage_rows(after.stdout)["ingest"] == "ok"
    # The interrupted run keeps its status: it was not taken for a killed one.
    assert [r["status"] for r in run_records(lake)] == ["interrupted", "success"]


def test_stalling_api_really_stalls(stalling_api: StallingApi) -> None:
    """Guards the fixture: without the stall the tests above would not test Ctrl-C mid-ingest."""
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(f"{stalling_api.api_url}/coins/markets", timeout=0.5)
    assert stalling_api.requested.is_set()
