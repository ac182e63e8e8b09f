"""The lake catalog's failures, each turned once into a LakeError a user can act on.

Attaching (a catalog missing, damaged, of a newer DuckLake, another lake's, unreachable, a
role without privileges, a full disk) and committing (another writer first: CommitConflict,
which the transform retries; an object store that failed; the disk).
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import duckdb

from .duck import one_line
from .errors import CommitConflict, LakeError
from .fserrors import duckdb_io_error, explain
from .objectstore import object_store_cause
from .pgconnect import scrub
from .settings import Settings


def catalog_file(settings: Settings) -> Path | None:
    """The SQLite catalog file, or None for a Postgres catalog."""
    uri = settings.catalog_uri
    return Path(uri.removeprefix("sqlite:")) if uri.startswith("sqlite:") else None


def _nearly_full(catalog: Path | None, *, below: int = 1 << 20) -> bool:
    """Whether the disk holding the SQLite `catalog` has less than `below` bytes free."""
    if catalog is None:
        return False
    try:
        return shutil.disk_usage(catalog.parent).free < below
    except OSError:
        return False


def attach_error(settings: Settings, exc: duckdb.Error, *, as_of: int | str | None) -> LakeError:
    where = settings.catalog_redacted
    text = one_line(exc)
    if settings.catalog_uri.startswith("postgres:"):
        # Never echo the conninfo or its password.
        text = scrub(text, settings.catalog_uri.removeprefix("postgres:"))
    lowered = text.lower()
    if "version mismatch" in lowered or "automatic_migration" in lowered:
        found = re.search(r"catalog version is ([\w.]+)", text)
        return LakeError(
            f"The lake catalog {where} is DuckLake version {found[1] if found else '?'}, "
            "which this cryptolake cannot read (it reads DuckLake 1.0): upgrade cryptolake "
            "(`uv sync` on a newer checkout), or point --catalog at another catalog."
        )
    if "does not match existing data path" in lowered:
        found = re.search(r'existing data path in the catalog "([^"]+)"', text)
        home = found[1].rstrip("/") if found else "another location"
        return LakeError(
            f"The lake catalog {where} belongs to the lake at {home}, not "
            f"{settings.lake_location}: point --lake (or CRYPTOLAKE_LAKE) at {home}, or give "
            "this lake a catalog of its own (--catalog)."
        )
    if "creating a new ducklake is explicitly disabled" in lowered:
        # An empty catalog file: a first transform killed before DuckLake initialised it.
        return LakeError(
            f"The lake catalog {where} holds no lake yet (a first transform did not finish); "
            "run `cryptolake transform` (or `cryptolake run --sample`) to build it."
        )
    if "not a database" in lowered or "malformed" in lowered:
        return LakeError(
            f"The lake catalog {where} is damaged or not a SQLite database ({text}). Restore "
            "it from a backup, or move it aside and rebuild silver and gold from bronze: "
            "`cryptolake transform --full-refresh`."
        )
    if as_of is not None and ("snapshot" in lowered or "no snapshot" in lowered):
        return LakeError(
            f"The lake has no snapshot {as_of} ({text}); `cryptolake status` lists its "
            "snapshots (older ones are expired after CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS)."
        )
    if (refused := _catalog_privilege(settings, text)) is not None:
        return refused
    if (translated := duckdb_io_error(exc, doing=f"open the lake catalog {where}")) is not None:
        return translated
    if "disk i/o error" in lowered and _nearly_full(catalog_file(settings)):
        # SQLite cannot create its shared-memory file (catalog.sqlite-shm) on a full disk
        # and says only "disk I/O error".
        return explain(errno.ENOSPC, None, doing=f"open the lake catalog {where}", fallback="")
    if "unable to open database" in lowered:
        return LakeError(
            f"Cannot open the lake catalog {where}: it is missing or its folder is not "
            "readable. Check --catalog (or CRYPTOLAKE_CATALOG) and the folder's permissions."
        )
    if where.startswith("postgres:"):
        # libpq's own words (`FATAL: database "x" does not exist`), not DuckDB's wrapping.
        fatal = re.search(r"failed: (?:(?:FATAL|ERROR):\s*)?(.+?)(?: \?.*|\.?\s*)$", text)
        cause = fatal[1] if fatal else text
        fix = (
            "create it (createdb), or fix --catalog (or CRYPTOLAKE_CATALOG)"
            if cause.startswith("database ") and "does not exist" in cause
            else "check that Postgres is up and the conninfo in --catalog (or "
            "CRYPTOLAKE_CATALOG) is right"
        )
        return LakeError(f"Cannot open the lake catalog {where}: {cause}; {fix}.")
    return LakeError(f"Cannot open the lake catalog {where}: {text}.")


def commit_error(settings: Settings, exc: duckdb.Error, *, doing: str) -> LakeError | None:
    """The LakeError for a failed write or commit a user can act on: a commit that
    conflicts with another writer's (CommitConflict, retried by `retry_conflicts`), an object
    store that failed, or the disk (naming the catalog file when DuckDB's message names no
    file: SQLite's `database or disk is full`)."""
    if is_conflict(exc):
        return CommitConflict(
            f"Cannot {doing}: another writer committed first ({one_line(exc)[:200]})."
        )
    if (refused := _catalog_privilege(settings, one_line(exc))) is not None:
        return refused
    if settings.s3 is not None and (found := object_store_cause(str(exc))) is not None:
        cause, fix = found
        return LakeError(f"Cannot {doing} on {settings.s3.describe}: {cause}; {fix}.")
    path = catalog_file(settings)
    return duckdb_io_error(exc, doing=doing, path=str(path) if path else None)


def _catalog_privilege(settings: Settings, text: str) -> LakeError | None:
    """A Postgres catalog's role lacking a privilege (not a folder's permissions)."""
    if not settings.catalog_uri.startswith("postgres:") or "permission denied for" not in text:
        return None
    found = re.search(r"permission denied for [^.;)]+", text)
    grant = (
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO <role>, and "
        "ALTER DEFAULT PRIVILEGES FOR ROLE <owner> IN SCHEMA public GRANT … ON TABLES TO "
        "<role> for the tables DuckLake creates later"
        if found and found[0].startswith("permission denied for table")
        else "GRANT USAGE, CREATE ON SCHEMA public TO <role>"
    )
    return LakeError(
        f"The lake catalog {settings.catalog_redacted}: {found[0] if found else text}. Its "
        f"Postgres role lacks a privilege on DuckLake's tables: {grant}; or use the role that "
        "owns the catalog database."
    )


def is_conflict(exc: BaseException) -> bool:
    """Whether DuckLake refused a commit because another transaction changed the same data."""
    text = str(exc).lower()
    return "conflict" in text and ("transaction" in text or "commit" in text)
