"""File-system errors on the lake, turned once into one line a user can act on.

A lake folder that is a file, a disk that is full, a read-only mount, an immutable file: the
operating system (or DuckDB, which writes through it) says so in its own terms, with a
traceback. Every stage runs its file work inside `lake_io(...)`, which raises a `LakeError`
naming the path, the cause in plain words, and what to do.
"""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb

from .duck import damaged_data_file, explain_damage, object_store_problem, one_line
from .errors import LakeError

P = ParamSpec("P")
R = TypeVar("R")

# errno -> (cause, fix)
_EXPLAINED: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", "Free space on that disk, or point --lake at another one."),
    errno.EDQUOT: (
        "disk quota exceeded",
        "Free space in your quota, or point --lake at another disk.",
    ),
    errno.EROFS: (
        "read-only file system",
        "Commands that only read the lake (status, query, report, check, publish) work on it; "
        "to write, mount it read-write or point --lake elsewhere.",
    ),
    errno.EACCES: (
        "permission denied (read-only for this user)",
        "Give this user write access to the lake folder, or point --lake elsewhere; status, "
        "query, report, check and publish only read it.",
    ),
    errno.EPERM: (
        "operation not permitted (an immutable file or folder?)",
        "Check its attributes (lsattr; chattr -i), or point --lake elsewhere.",
    ),
    errno.EEXIST: (
        "a file is in the way, where a folder should be",
        "Point --lake (or CRYPTOLAKE_LAKE) at a folder, or move the file away.",
    ),
    errno.ENOTDIR: (
        "part of the path is a file, not a folder",
        "Point --lake (or CRYPTOLAKE_LAKE) at a folder.",
    ),
    errno.ENOENT: ("no such file or folder", "Check the path."),
    errno.EISDIR: ("a folder is in the way, where a file should be", "Move it away."),
    errno.EIO: ("input/output error (a failing disk?)", "Check the disk (dmesg)."),
}
# How DuckDB words the same causes in its messages.
_DUCKDB_CAUSES = (
    ("no space left on device", errno.ENOSPC),
    ("database or disk is full", errno.ENOSPC),  # SQLite (the lake's catalog)
    ("attempt to write a readonly database", errno.EACCES),  # SQLite
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("operation not permitted", errno.EPERM),
)
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


# A read that is refused is not about writing.
_READ_DENIED = (
    "permission denied (this user may not read it)",
    "Give this user read access to the lake (chmod -R u+rX, or run as its owner).",
)


def explain(code: int | None, path: str | None, *, doing: str, fallback: str) -> LakeError:
    cause, fix = _EXPLAINED.get(code or -1, (fallback, "Check the lake folder and the disk."))
    if code == errno.EACCES and doing.startswith("read"):
        cause, fix = _READ_DENIED
    where = f" ({path})" if path and path not in doing else ""
    return LakeError(f"Cannot {doing}: {cause}{where}. {fix}")


def cause_of(exc: OSError, *, reading: bool = False) -> str:
    """The OS error's cause in plain words ("disk full", "read-only file system", ...)."""
    if reading and exc.errno == errno.EACCES:
        return _READ_DENIED[0]
    return _EXPLAINED.get(exc.errno or -1, (exc.strerror or str(exc), ""))[0]


def os_error(exc: OSError, *, doing: str, path: Path | None = None) -> LakeError:
    """The one-line LakeError for an OSError met while `doing` something with the lake
    (on `path`, when the error does not name its file, as a write on a descriptor)."""
    # A rename or link names its target second: the folder that refused it is the target's.
    named = exc.filename2 if isinstance(exc.filename2, str | Path) else exc.filename
    if isinstance(named, str | Path):
        path = Path(named)
    return explain(
        exc.errno, str(path) if path else None, doing=doing, fallback=exc.strerror or str(exc)
    )


def duckdb_io_error(exc: duckdb.Error, *, doing: str, path: str | None = None) -> LakeError | None:
    """The LakeError for a DuckDB error caused by the file system, or None for any other.

    `path` names the file when DuckDB's message does not (a SQLite catalog's errors).
    """
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, duckdb.OutOfMemoryException) or "out of memory" in lowered:
        first = text.splitlines()[0] if text else "out of memory"
        return LakeError(
            f"Cannot {doing}: DuckDB ran out of memory ({first}). Raise "
            "CRYPTOLAKE_MEMORY_LIMIT (default 2GB), or free memory on this machine."
        )
    if (stored := object_store_problem(exc)) is not None:
        return LakeError(f"Cannot {doing}: {stored}")
    for words, code in _DUCKDB_CAUSES:
        if words in lowered:
            quoted = _QUOTED_PATH.search(text)
            return explain(code, quoted[1] if quoted else path, doing=doing, fallback=words)
    return None


@contextmanager
def lake_io(doing: str) -> Iterator[None]:
    """Raise file-system errors met inside as one-line LakeErrors about `doing`."""
    try:
        yield
    except OSError as exc:
        raise os_error(exc, doing=doing) from exc
    except duckdb.Error as exc:
        translated = duckdb_io_error(exc, doing=doing)
        if translated is None and damaged_data_file(exc) is not None:
            translated = LakeError(f"Cannot {doing}: {one_line(exc)}; {explain_damage(exc, '')}")
        if translated is None:
            raise
        raise translated from exc


def on_lake(doing: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function's file-system errors become one-line LakeErrors."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with lake_io(doing):
                return function(*args, **kwargs)

        return wrapper

    return decorate
