"""Single setting values checked: DuckDB's memory limit and the lake's folder (settings.py
turns a problem into a ConfigError naming the flag or variable it came from)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .objectstore import ObjectLocation

# What DuckDB's memory_limit takes: a number and a unit (1000- or 1024-based).
MIN_MEMORY_BYTES = 128 * 1000**2
_UNITS = {"b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def _memory_bytes(limit: str) -> float:
    """DuckDB's memory syntax (2GB, 512MiB) in bytes; validated by _MEMORY first."""
    match = re.fullmatch(r"([\d.]+)\s*([a-z]+)", limit.strip().lower())
    return float(match[1]) * _UNITS.get(match[2], 1) if match else 0.0


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(b|bytes|[kmgt]i?b)$", re.IGNORECASE)


def memory_limit_problem(limit: str) -> str | None:
    """What is wrong with `limit` as DuckDB's memory_limit (`must be ...`), or None."""
    if not _MEMORY.match(limit.strip()):
        return "must be an amount of memory such as 2GB or 512MiB"
    if _memory_bytes(limit) < MIN_MEMORY_BYTES:
        return "must be at least 128MB for DuckDB to work"
    return None


def work_folder(location: ObjectLocation) -> Path:
    """The local folder of a lake on object storage: DuckDB's spill files and the lock that
    keeps this machine's runs apart (`$XDG_CACHE_HOME/cryptolake/lakes/<bucket>/<prefix>`)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cryptolake" / "lakes" / location.bucket / (location.prefix or "_root")


def lake_path_problem(lake: Path) -> str | None:
    """Why `lake` can never be a lake folder (it or a parent is a file), or None."""
    pattern = sorted(set("*?[]") & set(str(lake)))
    if pattern:
        # DuckDB reads lake files by glob: these would be taken as a pattern.
        return f"contains {' '.join(pattern)}, which DuckDB reads as a file pattern"
    if lake.is_file():
        return "is a file, not a folder"
    for parent in lake.absolute().parents:
        if parent.is_file():
            return f"is under a file ({parent}), not a folder"
    return None
