"""`cryptolake schedule` as a real process: runs, shows the next run, stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.history import recent_runs

from .clis import start_cli
from .lakes import settings_for


def test_schedule_runs_now_then_waits_and_stops_cleanly_on_sigterm(lake: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolake",
            "schedule",
            "--every",
            "1d",
            "--now",
            "--sample",
            "--lake",
            str(lake),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (lake / "catalog.sqlite").exists() and _finished_runs(lake):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let it reach the wait for the next slot
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "every 1d" in out
    assert "next run at" in out and "00:00 UTC" in out
    assert "run 1 started (now, as asked)" in out
    assert "schedule stopped: 1 run(s), 0 failed" in out  # the --now run counts
    assert "SAMPLE DATA" in err
    (record,) = recent_runs(settings_for(lake))
    assert (record.status, record.trigger) == ("success", "schedule")


def _finished_runs(lake: Path) -> bool:
    try:
        return any(r.status == "success" for r in recent_runs(settings_for(lake)))
    except Exception:
        return False  # the run still holds the database for writing


def test_schedule_flags_are_validated() -> None:
    runner = CliRunner()
    both = runner.invoke(app, ["schedule", "--every", "6h", "--daily", "00:30"])
    assert both.exit_code == 1 and "exactly one" in both.output
    bad = runner.invoke(app, ["schedule", "--cron", "0 0 31 2 *"])
    assert bad.exit_code == 1 and "never fires" in bad.output


def test_sigterm_while_ingest_waits_to_retry_stops_the_schedule_at_once(
    lake: Path, httpserver: HTTPServer
) -> None:
    # Every request fails with a 503: the client retries 6 times with backoffs of 1-2, 2-4,
    # 4-8, 8-16 and 16-32 s, more than 30 s in all, unless the stop cuts the wait short.
    httpserver.expect_request("/api/v3/coins/markets").respond_with_data("", status=503)
    proc = start_cli(
        "schedule", "--every", "1h", "--now", "--lake", str(lake),
        "--api-url", httpserver.url_for("/api/v3"),
        env={"COLUMNS": "200"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not httpserver.log:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the scheduled run never asked the API"
            time.sleep(0.02)
        first_request = time.monotonic()
        time.sleep(1.0)  # into the first backoff (at least 1 s; the throttle allows 1 per 6 s)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - first_request
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    assert proc.returncode == 0, err
    assert elapsed < 10, f"took {elapsed:.1f}s: the stop waited for the retries"
    assert len(httpserver.log) == 1  # the retry was never sent
    assert "GET /coins/markets attempt 1/6: HTTP 503 with an empty body; retrying in" in err
    assert "Traceback" not in err and "error:" not in err
    lines = out.splitlines()
    assert "schedule stopped: 1 run(s), 0 failed, 0 slot(s) skipped" in lines  # --now counts
    assert any(re.fullmatch(r"\S+ \S+ UTC run 1 stopped in \d+s", line) for line in lines), out
    assert "run 1 finished" not in out
    assert re.search(r"^│ ingest\s+│ stopped\s+│", out, flags=re.MULTILINE), out
    (record,) = recent_runs(settings_for(lake))
    assert (record.status, record.trigger) == ("stopped", "schedule")
    assert [(s["stage"], s["status"]) for s in record.stages] == [
        ("ingest", "stopped"),
        ("history", "not_run"),
        ("transform", "not_run"),
        ("check", "not_run"),
        ("publish", "not_run"),
    ]
