"""`cryptolake shell` and `query` against a real lake database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.shell import EXAMPLE_QUERIES, duckdb_cli, shell_argv

from .conftest import LakeTemplates
from .lakes import one_snapshot, settings_for


@pytest.fixture
def built_lake(lake: Path, lake_templates: LakeTemplates) -> Path:
    """One snapshot through silver and gold (a copy of the session's)."""
    return lake_templates.copy(one_snapshot, lake)


def test_shell_argv_opens_the_lake_read_only(built_lake: Path) -> None:
    argv = shell_argv(settings_for(built_lake), command="select 1")
    assert argv[0] == str(duckdb_cli())
    # The setup runs with its output off (a statement's result table is noise there).
    assert argv[1:3] == ["-cmd", ".output /dev/null"] and argv[5:7] == ["-cmd", ".output"]
    assert argv[3] == "-cmd" and argv[7:] == ["-c", "select 1"]
    setup = argv[4]
    # The extensions from their wheels, the lake attached read-only and in use.
    assert "install '" in setup and "load ducklake;" in setup
    assert f"attach 'ducklake:sqlite:{built_lake / 'catalog.sqlite'}' as lake (" in setup
    assert "read_only" in setup and setup.endswith("use lake;")
    version = subprocess.run([argv[0], "-version"], capture_output=True, text=True, check=True)
    assert "v1.5.5" in version.stdout


def test_shell_runs_sql_from_another_folder(built_lake: Path, tmp_path: Path) -> None:
    sql = (
        "select count(*) as n from gold.crypto_analytics_mart; "
        "select count(*) from silver.market_snapshots"
    )
    out = subprocess.run(
        [sys.executable, "-m", "cryptolake", "shell", "--lake", str(built_lake), "-c", sql],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "50" in out.stdout and "100" in out.stdout


def test_example_queries_all_run(built_lake: Path) -> None:
    runner = CliRunner()
    for example in EXAMPLE_QUERIES:
        result = runner.invoke(app, ["query", "--lake", str(built_lake), example.rstrip(";")])
        assert result.exit_code == 0, (example, result.output)


def test_query_formats(built_lake: Path) -> None:
    runner = CliRunner()
    sql = "select market_cap_category, coin_count from gold.market_segment_analysis"
    as_json = runner.invoke(app, ["query", "--lake", str(built_lake), sql, "--format", "json"])
    rows = json.loads(as_json.stdout)
    assert [r["market_cap_category"] for r in rows] == ["large", "mid", "small", "micro", "unknown"]
    assert sum(r["coin_count"] for r in rows) == 100
    as_csv = runner.invoke(app, ["query", "--lake", str(built_lake), sql, "--format", "csv"])
    assert as_csv.stdout.splitlines()[0] == '"market_cap_category","coin_count"'
    bad = runner.invoke(app, ["query", "--lake", str(built_lake), "select * from nope"])
    assert bad.exit_code == 1 and "nope" in bad.output and "Traceback" not in bad.output


def test_shell_without_a_lake_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["shell", "--lake", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "cryptolake run --sample" in result.output
