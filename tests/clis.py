"""Helpers for tests that drive the real CLI: in-process (typer's runner) or as a process."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cryptolake.cli import app

CLI = [sys.executable, "-m", "cryptolake"]


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any CRYPTOLAKE_* the developer's shell may carry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOLAKE_")}
    return env | extra


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `cryptolake *args` in-process with typer's runner.

    Output is 200 columns wide (the CLI's width for a pipe: its consoles are made at import,
    before any COLUMNS set here); for a narrow terminal, run the CLI as a process (`run_cli`).
    """
    return CliRunner().invoke(app, list(args), env=env or {})


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `cryptolake *args` as a real process, stdout and stderr piped (as cron does)."""
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=timeout,
        check=False,
    )


def mount_namespace_or_skip() -> list[str]:
    """`unshare -m` to run a script in a mount namespace of its own, or skip the test.

    Mounts made in it (a read-only bind mount, a small tmpfs) vanish with its process, so a
    test can never leave one behind. Needs root (CAP_SYS_ADMIN), as CI runs.
    """
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("mounts need root and unshare(1): read-only and full-disk cases skipped")
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a mount namespace here: {probe.stderr.decode().strip()}")
    return [unshare, "-m"]


def run_in_mounts(
    script: str, *, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a shell `script` in a private mount namespace; in it, `cryptolake` is the CLI."""
    namespace = mount_namespace_or_skip()
    cli = " ".join(shlex.quote(part) for part in CLI)
    return subprocess.run(
        [*namespace, "sh", "-c", f'set -u; cryptolake() {{ {cli} "$@"; }}\n{script}'],
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=timeout,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    """The single `error:` line of a failed command; fails on a traceback or several lines."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def lake_of(path: Path) -> str:
    return str(path)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `cryptolake *args` as a real process, stdout and stderr piped, not waited for."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(**(env or {})),
    )
