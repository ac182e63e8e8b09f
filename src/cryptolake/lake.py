"""Where everything lives in a lake folder, and the file operations that keep it consistent."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LakeError

if TYPE_CHECKING:
    from .settings import Settings
    from .store import LakeStore


@dataclass(frozen=True, slots=True)
class LakePaths:
    """The layout of one lake. Paths are absolute so SQL and views work from any folder.

    `store` reaches bronze and the run records by key, wherever the lake lives. For a lake
    on object storage `root` is only the local work folder (spill files, this machine's
    lock): the folder paths below are for a local lake and raise LakeError on another.
    """

    root: Path
    store: LakeStore = field(compare=False)
    # Writers on many machines at once (object storage and a Postgres catalog): no local lock.
    many_writers: bool = False

    @classmethod
    def at(cls, root: Path) -> LakePaths:
        """The lake in the local folder `root`."""
        from .store import LocalStore

        resolved = Path(root).expanduser().resolve()
        return cls(resolved, LocalStore(resolved))

    @classmethod
    def of(cls, settings: Settings) -> LakePaths:
        """The lake `settings` name: a folder, or a prefix in object storage."""
        if settings.lake_url is None:
            return cls.at(settings.lake)
        from .objectstore import ObjectLocation
        from .store import ObjectStore

        assert settings.s3 is not None  # Settings gives a lake on object storage its S3Config
        store = ObjectStore(ObjectLocation.parse(settings.lake_url), settings.s3)
        shared = settings.catalog_uri.startswith("postgres:")
        return cls(Path(settings.lake).expanduser().resolve(), store, many_writers=shared)

    @property
    def remote(self) -> bool:
        return self.store.remote

    @property
    def location(self) -> str:
        """The lake as messages name it: its folder or its `s3://` URL."""
        return self.store.url

    def _local(self, what: Path) -> Path:
        if self.store.remote:
            raise LakeError(
                f"This needs the lake's files on local disk, and {self.store.url} is on object "
                "storage; run it on a local lake (or a copy: `aws s3 sync`)."
            )
        return what

    @property
    def bronze(self) -> Path:
        return self._local(self.root / "bronze")

    @property
    def runs(self) -> Path:
        """Run manifests, kept outside every dataset's `*/*.json` glob."""
        return self.bronze / "_runs"

    @property
    def incoming(self) -> Path:
        """Staging for a run's bodies until the whole run has been fetched."""
        return self.bronze / "_incoming"

    @property
    def rejected(self) -> Path:
        """Bodies of runs that failed a schema contract, kept as evidence, never read."""
        return self.bronze / "_rejected"

    @property
    def quarantine(self) -> Path:
        """Bronze runs whose bodies failed verification, and orphan bodies: kept, never read."""
        return self._local(self.root / "quarantine")

    @property
    def silver(self) -> Path:
        return self._local(self.root / "silver")

    @property
    def tmp(self) -> Path:
        """DuckDB's spill folder, so a large build never fills /tmp (one per process on an
        object-store lake, whose work folder runs on one machine share)."""
        spill = self.root / ".tmp"
        return spill / str(os.getpid()) if self.store.remote else spill

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def dataset(self, name: str) -> Path:
        return self.bronze / name

    @property
    def data_url(self) -> str:
        """Where DuckLake keeps silver and gold's data files (with a trailing slash)."""
        return self.store.url + "/"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True, sync: bool = True) -> None:
    """Write `data` so that `path` shows either nothing (or its old content) or all of it.

    The bytes go to a hidden temp file in the same folder, are fsynced, then renamed into
    place. With `overwrite=False` an existing file is never replaced (FileExistsError).
    `sync=False` leaves durability to the caller (a group commit syncs many files at once).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file private (0600); lake files are meant to be shared readable.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the target exists, unlike rename(), which would replace it.
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def move_no_replace(src: Path, dst: Path) -> None:
    """Move a file into place atomically, refusing to replace an existing file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, dst)
    src.unlink()
