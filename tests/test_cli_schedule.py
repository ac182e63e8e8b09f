"""`cryptolake schedule` as a real process: runs, shows the next run, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.history import recent_runs

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
            if (lake / "cryptolake.duckdb").exists() and _finished_runs(lake):
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
