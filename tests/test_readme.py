"""The README is tested: its commands and flags exist, its settings are the real ones."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cryptolake.cli import app
from cryptolake.settings import Settings

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
COMMAND = re.compile(r"(?:^|uv run |/)cryptolake ([a-z]+)((?: [^\n`#]*)?)", re.MULTILINE)


def shell_blocks() -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang in ("bash", "cron", "ini")]


def documented_invocations() -> list[tuple[str, list[str]]]:
    """(command, flags) for every `cryptolake <command> …` in the README's shell blocks."""
    found = []
    for block in shell_blocks():
        # Join continuation lines of a wrapped usage line.
        text = re.sub(r"\n\s{8,}(?=\[|-)", " ", block)
        for name, rest in COMMAND.findall(text):
            flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-c)\b", rest)
            found.append((name, flags))
    return found


@cache
def help_text(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, (command, result.output)
    return result.output


def registered_commands() -> set[str]:
    group = get_command(app)
    return set(getattr(group, "commands", {}))


def test_quick_start_is_two_commands() -> None:
    start = README.index("## Quick start")
    lang, body = FENCE.findall(README[start:])[0]
    lines = [line.split("#")[0].strip() for line in body.strip().splitlines()]
    assert lang == "bash"
    assert lines == ["uv run cryptolake run --sample", "uv run pytest"]


def test_every_documented_command_and_flag_exists() -> None:
    invocations = documented_invocations()
    assert {name for name, _ in invocations} >= {"run", "ingest", "transform", "publish"}
    for name, flags in invocations:
        assert name in registered_commands(), f"README documents unknown command {name!r}"
        for flag in flags:
            assert flag in help_text(name), f"`cryptolake {name}` has no {flag}"


def test_every_command_is_documented() -> None:
    for name in registered_commands():
        assert f"`cryptolake {name}`" in README, f"README does not document {name}"
        headings = [line for line in README.splitlines() if line.startswith("### ")]
        assert any(f"`cryptolake {name}`" in h for h in headings), f"no section for {name}"


SETTINGS_ROW = re.compile(r"^\| ([^|]+) \| (`--[a-z-]+`|—) \| (`CRYPTOLAKE_[A-Z_]+`|—) \|", re.M)
FIELD_FOR_ENV = {
    "CRYPTOLAKE_LAKE": ("lake", "/tmp/x", Path("/tmp/x")),
    "CRYPTOLAKE_API_URL": ("api_url", "http://h/api/v3", "http://h/api/v3"),
    "CRYPTOLAKE_API_PLAN": ("api_plan", "pro", "pro"),
    "CRYPTOLAKE_VS_CURRENCY": ("vs_currency", "eur", "eur"),
    "CRYPTOLAKE_TOP": ("top", "42", 42),
    "CRYPTOLAKE_RATE": ("rate", "7", 7.0),
    "CRYPTOLAKE_PG_SCHEMA": ("pg_schema", "marts", "marts"),
    "CRYPTOLAKE_FRESHNESS_HOURS": ("freshness_hours", "12", 12.0),
    "CRYPTOLAKE_MEMORY_LIMIT": ("memory_limit", "1GB", "1GB"),
    "CRYPTOLAKE_MAINTAIN_EVERY": ("maintain_every", "7", 7),
    "CRYPTOLAKE_SNAPSHOT_RETENTION_DAYS": ("snapshot_retention_days", "3", 3.0),
    "CRYPTOLAKE_HISTORY_BUDGET": ("history_budget", "5", 5),
    "CRYPTOLAKE_HISTORY_DAYS": ("history_days", "90", 90),
}


def settings_rows() -> list[tuple[str, str, str]]:
    start = README.index("## Settings")
    section = README[start : README.index("\n## ", start + 5)]
    return [(a.strip(), b.strip("`"), c.strip("`")) for a, b, c in SETTINGS_ROW.findall(section)]


def test_settings_table_flags_exist() -> None:
    rows = settings_rows()
    assert len(rows) == 17
    for _, flag, _env in rows:
        if flag != "—":
            assert any(flag in help_text(c) for c in ("run", "ingest", "publish", "backfill")), flag


@pytest.mark.parametrize("env", sorted(FIELD_FOR_ENV))
def test_settings_table_env_vars_are_read(env: str) -> None:
    assert env in {row[2] for row in settings_rows()}
    field, raw, expected = FIELD_FOR_ENV[env]
    assert getattr(Settings.resolve(env={env: raw}), field) == expected


def test_secret_env_vars_are_read() -> None:
    documented = {row[2] for row in settings_rows()}
    assert {"CRYPTOLAKE_API_KEY", "CRYPTOLAKE_POSTGRES_DSN", "CRYPTOLAKE_CATALOG"} <= documented
    settings = Settings.resolve(
        env={
            "CRYPTOLAKE_API_KEY": "k-1",
            "CRYPTOLAKE_POSTGRES_DSN": "postgresql://u:p@h/db",
            "CRYPTOLAKE_CATALOG": "postgres:dbname=lake password=c4t4l0g",
        }
    )
    assert settings.api_key is not None and settings.api_key.reveal() == "k-1"
    assert settings.postgres_dsn is not None
    assert settings.catalog_uri == "postgres:dbname=lake password=c4t4l0g"
    assert settings.catalog_redacted == "postgres:dbname=lake password=***"
    assert "p@" not in repr(settings) and "k-1" not in repr(settings)
    assert "c4t4l0g" not in repr(settings)


# --- Claims the README makes about behaviour, each run for real -------------------------


def section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n#", start + len(heading))
    return README[start : end if end != -1 else None]


def test_commands_table_is_in_help_order() -> None:
    table = re.findall(r"^\| `cryptolake ([a-z]+)` \|", section("## Commands"), re.M)
    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    in_help = re.findall(r"^│ ([a-z]+) {2,}", listed, re.M)
    assert table == in_help
    assert table[0] == "run"


def test_report_goes_to_the_current_folder_by_default(
    sample_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "written to `./report.html` in the current folder unless `--out`" in " ".join(
        section("### `cryptolake report`").split()
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "--lake", str(sample_lake)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file()
    assert not (sample_lake / "report.html").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_goes_before_or_after_the_command(sample_lake: Path, where: str) -> None:
    assert "`--verbose` (`-v`, before or after the command)" in " ".join(README.split())
    args = ["status", "--lake", str(sample_lake)]
    argv = ["--verbose", *args] if where == "before" else [*args, "--verbose"]
    assert CliRunner().invoke(app, argv).exit_code == 0


def test_exit_codes_are_as_documented(sample_lake: Path) -> None:
    text = " ".join(section("## Commands").split())
    assert (
        "exits 1; Ctrl-C prints one line and exits 130 (SIGTERM: 143); a usage error (an "
        "unknown flag) is one `error:` line too and exits 2" in text
    )
    assert CliRunner().invoke(app, ["status", "--no-such-flag"]).exit_code == 2
    assert (
        CliRunner().invoke(app, ["transform", "--lake", str(sample_lake / "nope")]).exit_code == 1
    )


def test_query_reads_and_refuses_what_the_readme_says(sample_lake: Path) -> None:
    text = " ".join(section("### `cryptolake query` and `cryptolake shell`").split())
    reading = re.search(r"one statement that reads \(([^)]*)\)", text)
    refused = re.search(r"anything else \(([^)]*)\)", text)
    assert reading and refused
    examples = {
        "select": "select 1",
        "with": "with a as (select 1 as x) select x from a",
        "show": "show tables",
        "describe": "describe gold.coin_daily",
        "summarize": "summarize gold.market_daily",
        "pragma": "pragma version",
        "call": "call pragma_version()",
        "explain": "explain select 1",
        "set": "set threads = 1",
        "copy … to": f"copy gold.coin_daily to '{sample_lake.parent / 'x.csv'}'",
        "create": "create table t (a int)",
        "attach": f"attach '{sample_lake.parent / 'other.duckdb'}'",
        "several statements": "select 1; select 2",
        "only a comment": "/* nothing */",
    }
    for kind in re.findall(r"`([^`]+)`", reading[1]):
        result = CliRunner().invoke(app, ["query", examples[kind], "--lake", str(sample_lake)])
        assert result.exit_code == 0, (kind, result.output)
    for kind in [*re.findall(r"`([^`]+)`", refused[1]), "several statements", "only a comment"]:
        result = CliRunner().invoke(app, ["query", examples[kind], "--lake", str(sample_lake)])
        assert result.exit_code == 1, (kind, result.output)
        assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not (sample_lake.parent / "x.csv").exists()
    assert not (sample_lake.parent / "other.duckdb").exists()
