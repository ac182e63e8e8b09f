"""One run at a time per local lake: an exclusive `flock` on `<lake>/.lock`.

(A lake on object storage with a Postgres catalog has no lock: its writers, on one machine
or many, are ordered by DuckLake's catalog, and conflicting commits are retried; see
transform.py. With a SQLite catalog, its work folder's lock keeps this machine's runs apart.)

The kernel releases a flock when its process dies, however it dies, so a killed run can never
wedge the lake. The holder writes who it is into the file and empties it on a clean exit; a
lock acquired over a non-empty file therefore means the previous holder was killed, and the
caller is told so (its run is then marked as killed in the run history).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import LockError
from .fserrors import os_error
from .lake import LakePaths
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    host: str
    run_id: str
    since: str

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since})"


class LakeLock:
    """Context manager holding the lake's lock; `.taken_over` names a killed previous holder."""

    def __init__(self, lake: LakePaths, *, run_id: str, readers_only: bool = False) -> None:
        """`readers_only`: the holder only reads the lake, so on a lake it cannot write
        (read-only mount or permissions), where no run can write either, it goes unlocked."""
        self.path = lake.lock
        self.location = lake.location
        self.many_writers = lake.many_writers
        self.run_id = run_id
        self.readers_only = readers_only
        self.taken_over: Holder | None = None
        self._fd: int | None = None

    def __enter__(self) -> LakeLock:
        if self.many_writers:
            # A lake on object storage with a Postgres catalog takes any number of writers,
            # on any machines: DuckLake orders their commits (see transform.py).
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if self.readers_only and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return self  # nothing can write this lake: nothing to keep out
            raise os_error(exc, doing="take the lake's lock", path=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another cryptolake process"
            raise LockError(
                f"The lake {self.location} is busy: {who} holds {self.path}. Wait for it to "
                "finish (or stop it); a killed run's lock is taken over automatically."
            ) from None
        self.taken_over = _read_holder(fd)
        me = Holder(
            pid=os.getpid(),
            host=socket.gethostname(),
            run_id=self.run_id,
            since=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_asdict(me)).encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, doing="take the lake's lock", path=self.path) from None
        self._fd = fd
        _HELD.add(self.path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        # A clean exit leaves an empty file: nothing to take over. If the file cannot be
        # emptied now (made immutable meanwhile, say), the next run just reads a holder that
        # is gone, which it treats as a killed run's: closing still releases the lock.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # (closing releases the flock)
        self._fd = None
        _HELD.discard(self.path)


# The lock files this process holds now.
_HELD: set[Path] = set()


def held_here(lake: LakePaths) -> bool:
    """Whether this process holds the lake's lock (so no other run writes it meanwhile)."""
    return lake.lock in _HELD


def _asdict(holder: Holder) -> dict[str, Any]:
    return {"pid": holder.pid, "host": holder.host, "run_id": holder.run_id, "since": holder.since}


def _read_holder(fd: int) -> Holder | None:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
        return Holder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            run_id=str(data["run_id"]),
            since=str(data["since"]),
        )
    except (ValueError, KeyError, TypeError):
        return Holder(pid=-1, host="?", run_id="unknown", since="?")


def lock_is_held(lake: LakePaths) -> bool:
    """Whether a live process holds the lake's lock (read-only: works on a read-only lake)."""
    try:
        fd = os.open(lake.lock, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no run has ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def stage_lock(
    settings: Settings, holder: str, *, creates_lake: bool = False, reads_only: bool = False
) -> Iterator[None]:
    """Hold the lake's lock around one stage run on its own, as `cryptolake run` holds it
    around all of them, so stages never overlap a run (`holder` names who holds it: the
    command, or a Dagster run's step).

    A lake folder that does not exist yet has nothing to protect unless the stage creates it
    (`creates_lake`: ingest, backfill); any other stage then says what to do itself. A holder
    that only reads the lake goes unlocked on a lake nobody can write. Raises `LockError` when
    another run holds the lock.
    """
    lake = LakePaths.of(settings)
    if lake.remote:
        lake.store.check()
        # This machine's runs stay apart; other machines' commits are DuckLake's to order.
        lake.root.mkdir(parents=True, exist_ok=True)
    elif not creates_lake and not lake.root.exists():
        yield
        return
    with LakeLock(lake, run_id=holder, readers_only=reads_only):
        yield
