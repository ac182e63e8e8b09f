"""DuckDB extensions loaded offline from the wheels that ship DuckDB's signed binaries.

`duckdb-extension-<name>==<duckdb version>` carries `<name>.duckdb_extension`, signed by
DuckDB: `INSTALL '<path>'` copies it into DuckDB's extension folder (the signature is checked,
as always), then `LOAD` loads it. Nothing is downloaded at run time.
"""

from __future__ import annotations

from importlib import util
from pathlib import Path

import duckdb

from .duck import one_line, quote_literal
from .errors import CryptolakeError

# Extension name -> the Python package of its wheel.
WHEELS = {
    "postgres": "duckdb_extension_postgres",
    "ducklake": "duckdb_extension_ducklake",
    "sqlite": "duckdb_extension_sqlite",
    "httpfs": "duckdb_extension_httpfs",
}
# The name DuckDB reports once one is loaded, where it differs.
_LOADED_AS = {"postgres": "postgres_scanner", "sqlite": "sqlite_scanner"}


def extension_path(name: str) -> Path | None:
    """The signed `<name>.duckdb_extension` in its wheel for this DuckDB version, if installed."""
    spec = util.find_spec(WHEELS[name])
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    return path if path.is_file() else None


def load_extension(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    error: type[CryptolakeError] = CryptolakeError,
) -> None:
    """INSTALL `name` from its wheel (else DuckDB's repository) and LOAD it; `error` if not.

    Loading twice is a no-op, so callers need not track what a connection has loaded.
    """
    loaded = con.execute(
        "select count(*) from duckdb_extensions() where loaded and extension_name = ?",
        [_LOADED_AS.get(name, name)],
    ).fetchone()
    if loaded and loaded[0]:
        return
    path = extension_path(name)
    package = WHEELS[name].replace("_", "-")
    try:
        con.execute(f"install {quote_literal(str(path))}" if path else f"install {name}")
        con.execute(f"load {name}")
    except duckdb.Error as exc:
        raise error(
            f"Cannot load DuckDB's {name} extension ({one_line(exc)}); run `uv sync` to "
            f"install the {package} package (version {duckdb.__version__}, as duckdb)."
        ) from None
