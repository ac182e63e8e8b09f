"""File-system faults on the lake folder, through the real CLI.

A `--lake` (or `CRYPTOLAKE_LAKE`) that is a file or lies under one, an immutable lake root
(`chattr +i`), a read-only bind mount, a lake unwritable by permissions (root without
CAP_DAC_OVERRIDE), a full disk (a small tmpfs) and a completely full one: each failing command
prints exactly one `error:` line naming the path and the cause, no traceback, and exits 1; the
run record names the stage that failed; the commands that only read the lake (status, query,
report, check, publish) keep working on a read-only lake; a lake that met a full disk runs
again once there is room. Mounts live in a private mount namespace and vanish with it;
immutable flags and permissions are restored in teardown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.clis import CLI, clean_env, invoke, one_error_line, run_cli, run_in_mounts

FILE_FIX = "not a folder: point it at a folder (a missing one is created)."
READ_ONLY_FIX = (
    "Commands that only read the lake (status, query, report, check, publish) work on it; to "
    "write, mount it read-write or point --lake elsewhere."
)
DENIED = "permission denied (read-only for this user)"
DENIED_FIX = (
    "Give this user write access to the lake folder, or point --lake elsewhere; status, query, "
    "report, check and publish only read it."
)
IMMUTABLE = "operation not permitted (an immutable file or folder?)"
IMMUTABLE_FIX = "Check its attributes (lsattr; chattr -i), or point --lake elsewhere."
DISK_FULL_FIX = "Free space on that disk, or point --lake at another one."
WRITING_COMMANDS = [["run", "--sample"], ["ingest", "--sample"], ["transform"]]
# Root without the capabilities that let it ignore file permissions.
SETPRIV = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]
# 130 rows in the sample lake: a day of each of its 100 coins, and the 30 days of bitcoin's
# recorded history its run's history stage fetched.
COUNT_COIN_DAILY = "select count(*) as n from gold.coin_daily"


@dataclass(frozen=True)
class Outcome:
    """What one CLI command in a script did."""

    code: int
    stdout: str
    stderr: str


def line(*words: str) -> str:
    """The exact `error:` line, from its parts."""
    return "error: " + "".join(words)


def quoted(*args: str | Path) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


def step(results: Path, name: str, *args: str | Path, background: bool = False) -> str:
    """A script line running `cryptolake *args`, its outcome kept as `results/name.*`."""
    out = results / name
    end = " &" if background else ""
    return (
        f"{{ cryptolake {quoted(*args)} >{quoted(f'{out}.out')} 2>{quoted(f'{out}.err')}; "
        f"echo $? >{quoted(f'{out}.rc')}; }}{end}\n"
    )


def outcome(results: Path, name: str) -> Outcome:
    return Outcome(
        code=int((results / f"{name}.rc").read_text()),
        stdout=(results / f"{name}.out").read_text(),
        stderr=(results / f"{name}.err").read_text(),
    )


def mounted(script: str, *, env: dict[str, str] | None = None) -> None:
    """Run `script` in a mount namespace of its own; it must end well."""
    done = run_in_mounts(script, env=env)
    assert done.returncode == 0, done.stderr


def read_only(lake: Path) -> str:
    """Script lines bind-mounting `lake` read-only onto itself, and proving it read-only.

    On itself, so that the silver views' absolute paths also lead through the mount.
    """
    return (
        f"mount --bind {quoted(lake, lake)} && "
        f"mount -o remount,bind,ro {quoted(lake)} || exit 97\n"
        f"touch {quoted(lake / 'probe')} 2>/dev/null && exit 98\n"
    )


def small_disk(mount_point: Path, lake: Path, built: Path) -> str:
    """Script lines mounting an 8 MB tmpfs on `mount_point` and copying `built` to `lake`."""
    mount_point.mkdir()
    return (
        f"mount -t tmpfs -o size=8m tmpfs {quoted(mount_point)} || exit 97\n"
        f"cp -a {quoted(built, lake)} || exit 96\n"
    )


def run_records(lake: Path) -> list[dict[str, Any]]:
    """The lake's run records (`_meta/runs/*.json`), oldest first (by start time)."""
    records = [json.loads(p.read_text()) for p in (lake / "_meta" / "runs").glob("*.json")]
    return sorted(records, key=lambda r: (r["started_at"], r["run_id"]))


def stages(record: dict[str, Any]) -> dict[str, str]:
    return {stage["stage"]: stage["status"] for stage in record["stages"]}


def run_all(
    commands: dict[str, Sequence[str]], prefix: Sequence[str] = ()
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the CLI commands at once (each `[*prefix, cryptolake, *args]`), by name."""

    def one(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *CLI, *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        done = list(pool.map(one, commands.values()))
    return dict(zip(commands, done, strict=True))


@pytest.fixture
def lake_copy(sample_lake: Path, tmp_path: Path) -> Path:
    """A copy of the built lake, for this test to break.

    (Its silver views still read the built lake's Parquet, by absolute path, until a transform
    rewrites them.)
    """
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake, symlinks=True)
    return lake


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths appended here are made immutable by the test; always made mutable again after."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and chattr(1)")
    probe = tmp_path / "probe"
    probe.mkdir()
    tried = subprocess.run(["chattr", "+i", probe], capture_output=True, text=True, check=False)
    subprocess.run(["chattr", "-i", probe], capture_output=True, check=False)
    probe.rmdir()
    if tried.returncode != 0:
        pytest.skip(f"this file system has no immutable flag: {tried.stderr.strip()}")
    paths: list[Path] = []
    try:
        yield paths
    finally:
        for path in paths:
            subprocess.run(["chattr", "-i", path], check=True)


@pytest.fixture
def unprivileged(tmp_path: Path) -> list[str]:
    """A command prefix under which file permissions apply (root drops DAC override)."""
    prefix = SETPRIV if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("root ignores file permissions, and setpriv(1) is missing to drop that")
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        tried = subprocess.run([*prefix, "touch", probe / "file"], capture_output=True, check=False)
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)
    if tried.returncode == 0:
        pytest.skip("cannot drop the right to write into a read-only folder here")
    return prefix


# --- a lake path that is a file, or under one ---------------------------------------------------


@pytest.mark.parametrize(
    "command", [["run", "--sample"], ["ingest", "--sample"], ["transform"], ["status"]]
)
@pytest.mark.parametrize("source", ["flag", "env"])
@pytest.mark.parametrize("under", [False, True], ids=["file", "under-file"])
def test_lake_that_is_a_file_or_under_one_is_one_error_and_creates_nothing(
    tmp_path: Path, command: list[str], source: str, under: bool
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    lake = afile / "sub" if under else afile
    if source == "flag":
        result = invoke(*command, "--lake", str(lake))
        named = f"--lake {lake}"
    else:
        result = invoke(*command, env={"CRYPTOLAKE_LAKE": str(lake)})
        named = f"CRYPTOLAKE_LAKE={lake}"

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # not an uncaught error
    where = f"is under a file ({afile}), " if under else "is a file, "
    assert result.stderr == line(named, " ", where, FILE_FIX) + "\n"
    assert list(tmp_path.iterdir()) == [afile]
    assert afile.is_file()
    assert afile.read_text() == ""


# --- an immutable lake root -------------------------------------------------------------------


def test_an_immutable_lake_root_still_runs(lake_copy: Path, immutable: list[Path]) -> None:
    # Only the root folder is immutable: a run creates nothing there (DuckLake writes the
    # catalog file and the silver/gold folders, which exist), so it works, and nothing
    # blames another program.
    before = run_records(lake_copy)
    immutable.append(lake_copy)
    subprocess.run(["chattr", "+i", lake_copy], check=True)

    result = run_cli("run", "--sample", "--lake", str(lake_copy))

    assert result.returncode == 0, result.stderr
    records = run_records(lake_copy)
    assert len(records) == len(before) + 1
    assert records[-1]["status"] == "success"
    assert stages(records[-1])["transform"] == "ok"


# --- a read-only mount -------------------------------------------------------------------------


def test_read_only_mount_fails_writes_at_the_lock_and_serves_reads(
    sample_lake: Path, tmp_path: Path
) -> None:
    ro = sample_lake  # mounted read-only in the script's namespace only
    results = tmp_path / "results"
    results.mkdir()
    report = tmp_path / "report.html"
    reads = {
        "status": ["status"],
        "check": ["check"],
        "query": ["query", "--format", "csv", COUNT_COIN_DAILY],
        "report": ["report", "--out", str(report)],
    }
    writes = {command[0]: command for command in WRITING_COMMANDS}
    script = read_only(ro)
    for name, args in {**writes, **reads}.items():
        script += step(results, name, *args, "--lake", ro, background=True)
    script += "wait\n"

    mounted(script)

    for command in WRITING_COMMANDS:
        failed = outcome(results, command[0])
        assert failed.code == 1, (command, failed.stderr)
        assert one_error_line(failed.stderr) == line(
            f"Cannot take the lake's lock: read-only file system ({ro}/.lock). {READ_ONLY_FIX}"
        ), command
    for name in reads:
        read = outcome(results, name)
        assert read.code == 0, (name, read.stderr)
        assert "error:" not in read.stderr, name
    assert outcome(results, "status").stdout.startswith(f"lake {ro}\n")
    assert outcome(results, "query").stdout == '"n"\n130\n'
    assert report.stat().st_size > 0
    assert "<html" in report.read_text().lower()


def test_publish_from_a_read_only_mount(
    sample_lake: Path, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    ro = sample_lake  # mounted read-only in the script's namespace only
    results = tmp_path / "results"
    results.mkdir()
    script = read_only(ro)
    script += step(results, "publish", "publish", "--pg-schema", pg_schema, "--lake", ro)

    mounted(script, env={"CRYPTOLAKE_POSTGRES_DSN": pg_dsn})

    published = outcome(results, "publish")
    assert published.code == 0, published.stderr
    assert "error:" not in published.stderr
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f"select count(*) from {pg_schema}.coin_daily").fetchone()
    assert row == (130,)  # 100 coins' snapshot day, and bitcoin's 30 recorded history days


# --- a lake unwritable by its permissions ------------------------------------------------------


def test_lake_root_without_write_permission_still_transforms_and_serves_reads(
    lake_copy: Path, unprivileged: list[str]
) -> None:
    lake_copy.chmod(0o555)
    try:
        done = run_all(
            {
                "transform": ["transform", "--lake", str(lake_copy)],
                "status": ["status", "--lake", str(lake_copy)],
                "query": ["query", "--format", "csv", COUNT_COIN_DAILY, "--lake", str(lake_copy)],
            },
            prefix=unprivileged,
        )
    finally:
        lake_copy.chmod(0o755)

    # Nothing is created in the root (the catalog and the data folders exist): it works.
    assert done["transform"].returncode == 0, done["transform"].stderr
    assert "other program" not in done["transform"].stderr
    assert done["status"].returncode == 0, done["status"].stderr
    assert done["status"].stdout.startswith(f"lake {lake_copy}\n")
    assert done["query"].returncode == 0, done["query"].stderr
    assert done["query"].stdout == '"n"\n130\n'


def test_lake_without_any_write_permission_fails_run_at_the_lock_and_serves_reads(
    lake_copy: Path, tmp_path: Path, unprivileged: list[str]
) -> None:
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    subprocess.run(["chmod", "-R", "a-w", lake_copy], check=True)
    try:
        done = run_all(
            {
                "run": ["run", "--sample", "--lake", str(lake_copy)],
                "status": ["status", "--lake", str(lake_copy)],
                "query": ["query", "--format", "csv", COUNT_COIN_DAILY, "--lake", str(lake_copy)],
                "report": ["report", "--out", str(report), "--lake", str(lake_copy)],
            },
            prefix=unprivileged,
        )
    finally:
        subprocess.run(["chmod", "-R", "u+w", lake_copy], check=True)

    failed = done["run"]
    assert failed.returncode == 1, failed.stderr
    assert one_error_line(failed.stderr) == line(
        f"Cannot take the lake's lock: {DENIED} ({lake_copy}/.lock). {DENIED_FIX}"
    )
    assert "other program" not in failed.stderr
    for name in ("status", "query", "report"):
        assert done[name].returncode == 0, (name, done[name].stderr)
        assert "error:" not in done[name].stderr, name
    assert done["query"].stdout == '"n"\n130\n'
    assert report.stat().st_size > 0


# --- a full disk -------------------------------------------------------------------------------


def test_disk_full_during_transform_is_recorded_and_the_lake_runs_again(
    sample_lake: Path, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    lake = disk / "lake"
    results = tmp_path / "results"
    results.mkdir()
    kept = tmp_path / "kept"
    script = small_disk(disk, lake, sample_lake)
    # Leave 400 KB: room for ingest's bronze (about 170 KB), not for all of a transform's
    # Parquet files and catalog commits.
    script += f"avail=$(df -k --output=avail {quoted(disk)} | tail -n 1)\n"
    script += f"dd if=/dev/zero of={quoted(disk / 'fill')} bs=1k count=$((avail - 400)) "
    script += "2>/dev/null || exit 95\n"
    script += step(results, "full", "run", "--sample", "--lake", lake)
    script += f"ls -a {quoted(lake)} >{quoted(results / 'after-failure.ls')}\n"
    script += f"rm {quoted(disk / 'fill')}\n"
    script += step(results, "again", "run", "--sample", "--quiet", "--lake", lake)
    script += f"cp -a {quoted(lake / '_meta' / 'runs', kept)}\n"

    mounted(script)

    full = outcome(results, "full")
    assert full.code == 1, full.stderr
    error = one_error_line(full.stderr)
    message = rf"Cannot build (silver|gold): disk full \({re.escape(str(lake))}/\S+\)\. "
    assert re.fullmatch("error: " + message + re.escape(DISK_FULL_FIX), error), error
    # The transaction rolled back: the catalog is still there, and the next run works.
    listing = (results / "after-failure.ls").read_text().split()
    assert "catalog.sqlite" in listing
    records = [json.loads(path.read_text()) for path in sorted(kept.glob("*.json"))]
    failed, after = records[-2:]
    assert failed["status"] == "failed"
    assert failed["error"] == error.removeprefix("error: ")
    assert stages(failed) == {
        "ingest": "ok",
        "history": "ok",
        "transform": "failed",
        "check": "not_run",
        "publish": "not_run",
    }
    again = outcome(results, "again")
    assert again.code == 0, again.stderr
    assert after["status"] == "success"
    assert stages(after) == {
        "ingest": "ok",
        "history": "ok",
        "transform": "ok",
        "check": "ok",
        "publish": "skipped",
    }


def test_completely_full_disk_fails_at_the_lock_and_the_lake_runs_again(
    sample_lake: Path, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    lake = disk / "lake"
    results = tmp_path / "results"
    results.mkdir()
    kept = tmp_path / "kept"
    script = small_disk(disk, lake, sample_lake)
    # dd stops (and fails) when the disk is full, which is the point.
    script += f"dd if=/dev/zero of={quoted(disk / 'fill')} bs=1k 2>/dev/null\n"
    script += f"df -k --output=avail {quoted(disk)} | tail -n 1 >{quoted(results / 'avail')}\n"
    script += step(results, "full", "run", "--sample", "--lake", lake)
    script += f"rm {quoted(disk / 'fill')}\n"
    script += step(results, "again", "run", "--sample", "--quiet", "--lake", lake)
    script += f"cp -a {quoted(lake / '_meta' / 'runs', kept)}\n"

    mounted(script)

    assert int((results / "avail").read_text()) == 0
    full = outcome(results, "full")
    assert full.code == 1, full.stderr
    assert one_error_line(full.stderr) == line(
        f"Cannot take the lake's lock: disk full ({lake}/.lock). {DISK_FULL_FIX}"
    )
    again = outcome(results, "again")
    assert again.code == 0, again.stderr
    records = [json.loads(path.read_text()) for path in sorted(kept.glob("*.json"))]
    # The built lake's run, then only the one after freeing space: the run that could not
    # take the lock never started.
    assert len(records) == len(run_records(sample_lake)) + 1
    assert records[-1]["status"] == "success"
    assert stages(records[-1])["check"] == "ok"
