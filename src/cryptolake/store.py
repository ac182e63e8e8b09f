"""The lake's files as keys: a folder on local disk, or a prefix in object storage.

Bronze (raw bodies, run manifests) and the run records are bytes at keys relative to the lake
root (`bronze/_runs/ingest_date=2026-11-30/<run_id>.json`). One interface serves both homes:

- `LocalStore`: files under the lake folder, written atomically (temp file, fsync, rename;
  `link` where a file must never be replaced), as bronze always was.
- `ObjectStore`: objects under `s3://bucket/prefix`, through `pyarrow.fs`. An object store
  has no rename, link, fsync or flock, and needs none: a PUT is atomic (an object is all
  there or absent), keys are unique (run ids carry a random part), a run's manifest is
  written after its bodies, and bodies no manifest lists are swept later.

`uri(key)` is the key as DuckDB reads it (an absolute path, or an `s3://` URL).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .lake import atomic_write, move_no_replace
from .objectstore import ObjectLocation, S3Config, object_store_error


class LakeStore(ABC):
    """Bytes at keys under the lake root. Errors are OSError (local) or LakeError (object)."""

    remote: bool
    url: str  # the lake root as DuckDB and messages name it, without a trailing slash

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def key_of(self, uri: str) -> str:
        """The key of `uri` (what `uri(key)` gave)."""
        return uri.removeprefix(self.url + "/")

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""

    @abstractmethod
    def list_keys(self, prefix: str, *, suffix: str = "", hidden: bool = False) -> list[str]:
        """Keys of every file under `prefix` (recursively) ending in `suffix`, sorted;
        files whose name starts with a dot (temp files) only with `hidden`."""

    @abstractmethod
    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        """(key, bytes) of every file under `prefix` but temp files, sorted by key."""

    @abstractmethod
    def write_new(self, key: str, data: bytes, *, sync: bool = True) -> None:
        """Write `data` at `key`, which must not exist (FileExistsError if it does)."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing what was there, all or nothing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete `key`; nothing happens when it is already gone."""

    @abstractmethod
    def move(self, key: str, to: str) -> None:
        """Move `key` to `to`, never replacing a file there (FileExistsError)."""

    @abstractmethod
    def age_s(self, key: str) -> float:
        """Seconds since `key` was last written."""

    @abstractmethod
    def sync(self) -> None:
        """Make every write so far durable (local disk: syncfs; an object store already is)."""

    def check(self) -> None:
        """Raise when the lake's storage cannot be reached (an object store's bucket)."""
        return


class LocalStore(LakeStore):
    """The lake folder on local disk."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str, *, suffix: str = "", hidden: bool = False) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        found: list[str] = []
        for top, _, names in os.walk(folder):
            base = Path(top).relative_to(self.root).as_posix()
            found.extend(
                f"{base}/{name}"
                for name in names
                if name.endswith(suffix) and (hidden or not name.startswith("."))
            )
        return sorted(found)

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        found = []
        for key in self.list_keys(prefix):
            try:
                found.append((key, self.path(key).stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def write_new(self, key: str, data: bytes, *, sync: bool = True) -> None:
        atomic_write(self.path(key), data, overwrite=False, sync=sync)

    def write(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def move(self, key: str, to: str) -> None:
        move_no_replace(self.path(key), self.path(to))

    def age_s(self, key: str) -> float:
        return time.time() - self.path(key).stat().st_mtime

    def sync(self) -> None:
        from .bronze_requests import sync_file_system

        sync_file_system(self.root)


class ObjectStore(LakeStore):
    """The lake under `s3://bucket/prefix`, through pyarrow.fs's S3 client."""

    remote = True

    def __init__(self, location: ObjectLocation, config: S3Config) -> None:
        self.location = location
        self.config = config
        self.url = location.url
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self.config.filesystem()
        return self._fs

    def _full(self, key: str) -> str:
        return f"{self.location.fs_path}/{key}" if key else self.location.fs_path

    def _error(self, exc: OSError, doing: str) -> Exception:
        return object_store_error(str(exc), doing=doing, where=self.config.describe)

    def read(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._full(key)) as stream:
                data: bytes = stream.read()
                return data
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "nosuchkey" in str(exc).lower():
                raise FileNotFoundError(self.uri(key)) from None
            raise self._error(exc, f"read {self.uri(key)}") from None

    def size(self, key: str) -> int | None:
        from pyarrow import fs

        try:
            info = self.fs.get_file_info(self._full(key))
        except OSError as exc:
            raise self._error(exc, f"read {self.uri(key)}") from None
        return int(info.size) if info.type == fs.FileType.File else None

    def list_keys(self, prefix: str, *, suffix: str = "", hidden: bool = False) -> list[str]:
        return [key for key, _ in self._list(prefix, suffix=suffix, hidden=hidden)]

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        return self._list(prefix)

    def _list(
        self, prefix: str, *, suffix: str = "", hidden: bool = False
    ) -> list[tuple[str, int]]:
        from pyarrow import fs

        base = self._full(prefix)
        try:
            infos = self.fs.get_file_info(
                fs.FileSelector(base, recursive=True, allow_not_found=True)
            )
        except OSError as exc:
            raise self._error(exc, f"list {self.uri(prefix)}") from None
        root = self.location.fs_path + "/" if self.location.fs_path else ""
        return sorted(
            (info.path.removeprefix(root), int(info.size))
            for info in infos
            if info.type == fs.FileType.File
            and info.path.endswith(suffix)
            and (hidden or not info.base_name.startswith("."))
        )

    def write_new(self, key: str, data: bytes, *, sync: bool = True) -> None:
        # pyarrow.fs has no conditional PUT (If-None-Match): the key is unique by its run id's
        # random part, and checked first so that a bug can never replace a body.
        if self.size(key) is not None:
            raise FileExistsError(self.uri(key))
        self.write(key, data)

    def write(self, key: str, data: bytes) -> None:
        try:
            with self.fs.open_output_stream(self._full(key)) as stream:
                stream.write(data)
        except OSError as exc:
            raise self._error(exc, f"write {self.uri(key)}") from None

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self._full(key))
        except FileNotFoundError:
            return
        except OSError as exc:
            if "not found" in str(exc).lower():
                return
            raise self._error(exc, f"delete {self.uri(key)}") from None

    def move(self, key: str, to: str) -> None:
        if self.size(to) is not None:
            raise FileExistsError(self.uri(to))
        try:
            self.fs.copy_file(self._full(key), self._full(to))
        except OSError as exc:
            raise self._error(exc, f"copy {self.uri(key)}") from None
        self.delete(key)

    def age_s(self, key: str) -> float:
        try:
            info = self.fs.get_file_info(self._full(key))
        except OSError as exc:
            raise self._error(exc, f"read {self.uri(key)}") from None
        mtime = info.mtime.timestamp() if info.mtime is not None else time.time()
        return time.time() - mtime

    def sync(self) -> None:
        return  # a PUT that returned is durable

    def check(self) -> None:
        """Raise LakeError naming the cause when the bucket is missing, refuses these
        credentials or does not answer (one request; a read of a missing bucket would
        otherwise look like an empty lake)."""
        from pyarrow import fs

        bucket = self.location.bucket
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise self._error(exc, f"reach the lake {self.url}") from None
        if info.type == fs.FileType.NotFound:
            raise object_store_error(
                "NoSuchBucket", doing=f"reach the lake {self.url}", where=self.config.describe
            )
