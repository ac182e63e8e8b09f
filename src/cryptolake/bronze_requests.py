"""Landing history requests in bronze: a manifest per request, made durable in groups.

A history request (see backfill.py) lands as its body in its dataset's partition and a
manifest of its own in `bronze/_runs/`. Both are written atomically (a hidden temp file
linked into place, never over an existing file), the body first: a reader of the manifests,
silver or the next backfill's plan, never finds a manifest without its body.

Durability comes in groups (group commit, as databases do with their log): bodies are
written as they arrive; a flush makes them durable with one `syncfs` of the lake's file
system, then writes the group's manifests and makes those durable with another. A manifest
is thus never on disk before its body, at two syncs per group instead of four fsyncs per
request. The caller flushes whenever it would wait anyway (a rate-limited API: every request
is its own group, committed as it arrives) and at least every `max_delay_s` otherwise (an
unlimited loopback replay: hundreds of requests a group). A process killed before a flush
leaves bodies no manifest lists, which readers ignore; their requests are asked again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from pathlib import Path

from .bronze import Manifest, manifest_key
from .failpoints import failpoint
from .lake import LakePaths


def history_body_path(*, dataset: str, ingest_date: str, request_id: str, coin_id: str) -> str:
    """Where a history request's body lands, relative to the lake root."""
    return f"bronze/{dataset}/ingest_date={ingest_date}/{request_id}-{coin_id}.json"


def _libc_syncfs() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None
    return getattr(libc, "syncfs", None) if libc is not None else None


_SYNCFS = _libc_syncfs()


def sync_file_system(folder: Path) -> None:
    """Flush every write to the file system holding `folder` (Linux syncfs; else sync)."""
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:  # type: ignore[operator]
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(folder))
    finally:
        os.close(fd)


class RequestLanding:
    """Lands history requests: bodies at once, manifests durably in groups (module doc)."""

    def __init__(self, lake: LakePaths, *, max_delay_s: float = 0.5) -> None:
        self.lake = lake
        self.max_delay_s = max_delay_s
        self._pending: list[Manifest] = []
        self._opened_at: float | None = None
        self.committed = 0  # requests whose manifests are durable

    def land(self, manifest: Manifest, body: bytes | None) -> None:
        """Write the request's body (if any) now; its manifest at the next flush."""
        if body is not None:
            (entry,) = manifest.files
            self.lake.store.write_new(entry.path, body, sync=False)
        self._pending.append(manifest)
        if self._opened_at is None:
            self._opened_at = time.monotonic()

    @property
    def due(self) -> bool:
        """Whether the open group is older than `max_delay_s`."""
        return self._opened_at is not None and (
            time.monotonic() - self._opened_at >= self.max_delay_s
        )

    def flush(self) -> int:
        """Make the pending bodies, then their manifests, durable; returns how many landed.

        A manifest that cannot be written (a full disk) leaves its body unlisted: the body
        is removed again, and the error raised.
        """
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        self._opened_at = None
        self.lake.store.sync()
        failpoint("history.bodies_synced")
        for number, manifest in enumerate(pending):
            key = manifest_key(run_id=manifest.run_id, ingest_date=manifest.ingest_date)
            try:
                self.lake.store.write_new(key, manifest.to_json(), sync=False)
            except BaseException:
                for left in pending[number:]:
                    for entry in left.files:
                        with contextlib.suppress(Exception):
                            self.lake.store.delete(entry.path)
                raise
        self.lake.store.sync()
        self.committed += len(pending)
        return len(pending)
