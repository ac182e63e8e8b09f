"""Lake layout and the file operations that never leave a partial file visible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryptolake.lake import LakePaths, atomic_write, move_no_replace


def test_paths_are_absolute_and_keep_runs_out_of_dataset_globs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lake = LakePaths.at(Path("lake"))

    assert lake.root == tmp_path.resolve() / "lake"
    assert lake.dataset("coins_markets") == lake.root / "bronze" / "coins_markets"
    assert lake.runs == lake.root / "bronze" / "_runs"
    assert lake.incoming == lake.root / "bronze" / "_incoming"


def test_atomic_write_creates_folders_and_writes_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "page.json"

    atomic_write(path, b"[1, 2, 3]")

    assert path.read_bytes() == b"[1, 2, 3]"
    assert os.listdir(path.parent) == ["page.json"]  # no temp file left behind


def test_atomic_write_overwrites_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "page.json"
    atomic_write(path, b"old")

    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"

    with pytest.raises(FileExistsError):
        atomic_write(path, b"newer", overwrite=False)
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["page.json"]


@pytest.mark.parametrize("overwrite", [True, False])
def test_crash_before_rename_leaves_no_visible_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    # The one effect we cannot make real: the disk failing while the bytes are being synced.
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    path = tmp_path / "bronze" / "coins_markets" / "p0001.json"

    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(path, b'[{"id": "bitcoin"}]' * 1000, overwrite=overwrite)

    assert not path.exists()
    assert list(tmp_path.rglob("*.json")) == []
    assert os.listdir(path.parent) == []  # the hidden temp file is gone too


def test_crash_while_replacing_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "manifest.json"
    atomic_write(path, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new")

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_move_no_replace_moves_and_refuses_to_replace(tmp_path: Path) -> None:
    src = tmp_path / "incoming" / "p1.json"
    atomic_write(src, b"first")
    dst = tmp_path / "bronze" / "day" / "p1.json"

    move_no_replace(src, dst)
    assert dst.read_bytes() == b"first"
    assert not src.exists()

    atomic_write(src, b"second")
    with pytest.raises(FileExistsError):
        move_no_replace(src, dst)
    assert dst.read_bytes() == b"first"
    assert src.read_bytes() == b"second"
