"""A throwaway Postgres cluster for fault tests: started on a free port, stopped or killed at will.

Tests that kill Postgres must never touch the shared server (CRYPTOLAKE_TEST_PG_DSN). This
one runs the installed server binaries (`pg_config --bindir`, else the Debian folders) with
`initdb` in a temporary folder: trust authentication on 127.0.0.1 only, no Unix socket, and
durability off (a test's data need not survive power loss; a crash of the server itself is
still a crash, replayed from the WAL at the next start). initdb and postgres refuse to run as
root, so as root (how CI runs) the binaries run as the `postgres` OS user through `runuser`
(or `setpriv`), in a folder that user owns; a test is skipped, saying why, when that is
impossible or the binaries are missing.

`PgCluster.from_env()` rebuilds the handle in a child process (from `PgCluster.env()`), so a
child can stop the server from inside a publish, at a point its progress callback picks.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import pytest

ENV_PREFIX = "FAULT_PG_"  # not CRYPTOLAKE_*: those are the product's settings
OS_USER = "postgres"
StopMode = Literal["smart", "fast", "immediate"]


def find_bindir() -> Path | None:
    """The folder of the installed server binaries (initdb, pg_ctl, postgres), or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        path = Path(folder)
        if all((path / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def run_as_prefix() -> list[str] | None:
    """The command prefix that runs a server binary as a user it accepts, or None if none.

    Not root: ourselves. Root: the `postgres` OS user, through runuser (or setpriv).
    """
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError:
        return None
    candidates = []
    if runuser := shutil.which("runuser"):
        candidates.append([runuser, "-u", OS_USER, "--"])
    if setpriv := shutil.which("setpriv"):
        candidates.append(
            [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
        )
    for prefix in candidates:
        # Some containers forbid switching users (no PAM, no CAP_SETUID): try it once.
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    return None


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot run here, or None when it can."""
    if find_bindir() is None:
        return "no Postgres server binaries (initdb, pg_ctl, postgres) found"
    if run_as_prefix() is None:
        return (
            "running as root, and cannot run commands as a `postgres` OS user (no such user, "
            "or neither runuser nor setpriv works here); initdb refuses to run as root"
        )
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """One throwaway cluster: its binaries, data folder and port."""

    bindir: Path
    root: Path  # holds the data folder and the log; removed at the end
    port: int
    prefix: tuple[str, ...] = ()

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        """What a child process needs to rebuild this handle (`from_env`)."""
        return {
            f"{ENV_PREFIX}BINDIR": str(self.bindir),
            f"{ENV_PREFIX}ROOT": str(self.root),
            f"{ENV_PREFIX}PORT": str(self.port),
            f"{ENV_PREFIX}PREFIX": "\x1f".join(self.prefix),
        }

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PgCluster:
        env = os.environ if environ is None else environ
        prefix = env[f"{ENV_PREFIX}PREFIX"]
        return cls(
            Path(env[f"{ENV_PREFIX}BINDIR"]),
            Path(env[f"{ENV_PREFIX}ROOT"]),
            int(env[f"{ENV_PREFIX}PORT"]),
            tuple(prefix.split("\x1f")) if prefix else (),
        )

    def _run(self, binary: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self.prefix, str(self.bindir / binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,  # runuser keeps the cwd: one the postgres user may enter
        )
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(
                f"{binary} {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}\n{log}"
            )

    def initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "--auth=trust",
            f"--username={OS_USER}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                "-c unix_socket_directories=''",  # TCP only: no socket lock to go stale
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=40",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
            "-l", str(self.logfile), "-o", options,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        pid = int(first) if first.strip().isdigit() else None
        return pid if pid is not None and _alive(pid) else None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def stop(self, mode: StopMode = "immediate") -> None:
        """`pg_ctl stop -m mode`, waiting until the server is gone.

        `immediate` is a crash as the clients see it: every backend is ended at once
        without a checkpoint, and the next start replays the WAL.
        """
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))

    def kill(self) -> None:
        """SIGKILL the postmaster and every process of the server, as a power loss would."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in [pid, *children]) and time.monotonic() < deadline:
            time.sleep(0.02)
        # The postmaster may linger as a zombie until init reaps it (a second or so), and
        # a new postmaster refuses to start while the pid in postmaster.pid exists at all.
        (self.datadir / "postmaster.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        """Start it again after a stop or a kill (crash recovery replays the WAL)."""
        self.stop("immediate")
        self.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        return self.dsn(name)

    def cleanup(self) -> None:
        """Gone, whatever state it is in: killed if still running, its folder removed."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (a postmaster's backends and workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError, IndexError):
        # A zombie is dead: its parent (the postmaster, now gone) will not reap it soon.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started throwaway cluster; stopped and removed on leaving, whatever happened."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"throwaway Postgres cluster unavailable: {reason}")
    bindir = find_bindir()
    prefix = run_as_prefix()
    assert bindir is not None and prefix is not None
    # Not under pytest's tmp_path: as root that is a 0700 folder the postgres user cannot
    # enter.
    root = Path(tempfile.mkdtemp(prefix="cryptolake-pg-"))
    if prefix:
        user = pwd.getpwnam(OS_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PgCluster(bindir, root, free_port(), tuple(prefix))
    try:
        cluster.initdb()
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                cluster.port = free_port()  # taken meanwhile by someone else
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="module")
def throwaway_pg() -> Iterator[PgCluster]:
    """A throwaway Postgres cluster for the module (never the shared server)."""
    with pg_cluster() as cluster:
        yield cluster
