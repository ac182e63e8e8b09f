"""`cryptolake query` on a sample lake: one-line refusals, exact numbers, table/json/csv output.

The lake is built once per module with `cryptolake run --sample` (the 100 coins CoinGecko
served on 2023-01-08), so every value asserted here is a recorded one.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import Result

from .clis import invoke, run_cli

TOP5_SQL = (
    "select coin_id, current_price, market_cap from silver.market_snapshots "
    "order by market_cap desc limit 5"
)
# As the sample stores them: tether's 1.001 is not a rounded 1.00, caps keep every digit.
TOP5 = [
    ["bitcoin", "16951.52", "326407877229.0"],
    ["ethereum", "1266.66", "152631477365.0"],
    ["tether", "1.001", "66306408522.0"],
    ["usd-coin", "1.001", "43960505873.0"],
    ["binancecoin", "264.91", "43252208801.0"],
]
SMALL_PRICES_SQL = (
    "select coin_id, current_price from silver.market_snapshots "
    "where coin_id in ('bittorrent', 'shiba-inu', 'vechain') order by coin_id"
)
SMALL_PRICES = [
    ["bittorrent", "6.31917e-07"],
    ["shiba-inu", "8.45e-06"],
    ["vechain", "0.01649714"],
]
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$")
READ_ONLY = (
    "error: `cryptolake query` only reads the lake, and this is {kind} statement (the lake "
    "is attached read-only here). To export rows, use --format csv or json and redirect "
    "the output; for a session, use `cryptolake shell`."
)


def query(lake: Path, sql: str, output: str = "table") -> Result:
    """`cryptolake query --lake LAKE --format OUTPUT -- SQL`, in-process."""
    return invoke("query", "--lake", str(lake), "--format", output, "--", sql)


def refused(result: Result) -> str:
    """The whole stderr of a query refused as a user error: exit 1, one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a printed rich table, each cell stripped."""
    header = [
        [cell.strip() for cell in line[1:-1].split("┃")]
        for line in stdout.splitlines()
        if line.startswith("┃")
    ]
    rows = [
        [cell.strip() for cell in line[1:-1].split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]
    assert len(header) == 1, stdout
    return header[0], rows


@pytest.mark.parametrize("sql", ["", "   ", "/* c */", "-- c", " -- c\n/* d */ "])
def test_sql_with_no_statement_is_one_error_line(sample_lake: Path, sql: str) -> None:
    assert refused(query(sample_lake, sql)) == (
        "error: Nothing to run: the SQL is empty (or only comments)."
    )


def test_a_comment_after_double_dash_is_sql_not_an_option(sample_lake: Path) -> None:
    result = invoke("query", "--lake", str(sample_lake), "--", "-- c")
    assert refused(result) == "error: Nothing to run: the SQL is empty (or only comments)."


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("set threads=1", "a SET"),
        ("create table x(a int)", "a CREATE"),
        ("insert into meta.runs select * from meta.runs", "an INSERT"),
    ],
)
def test_a_statement_that_writes_is_refused_naming_its_kind(
    sample_lake: Path, sql: str, kind: str
) -> None:
    assert refused(query(sample_lake, sql)) == READ_ONLY.format(kind=kind)


def test_copy_is_refused_and_writes_no_file(sample_lake: Path, tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    result = query(sample_lake, f"copy gold.coin_daily to '{target}'")
    assert refused(result) == READ_ONLY.format(kind="a COPY")
    assert not target.exists()


def test_attach_is_refused_and_creates_no_database(sample_lake: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    result = query(sample_lake, f"attach '{other}' as other")
    assert refused(result) == READ_ONLY.format(kind="an ATTACH")
    assert not other.exists()


def test_two_statements_are_refused_as_one_line(sample_lake: Path) -> None:
    result = query(sample_lake, "select 1; select 2")
    assert refused(result) == (
        "error: `cryptolake query` runs one statement, this SQL holds 2; run them one at a "
        'time, or use `cryptolake shell -c "..."`.'
    )


def test_a_trailing_semicolon_and_comment_is_still_one_statement(sample_lake: Path) -> None:
    result = query(sample_lake, "select 1 as n; -- done")
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["n"], [["1"]])


def test_call_pragma_version_prints_the_duckdb_version(sample_lake: Path) -> None:
    result = query(sample_lake, "call pragma_version()")
    assert result.exit_code == 0, result.output
    header, rows = table(result.stdout)
    assert header == ["library_version", "source_id", "codename"]
    assert len(rows) == 1 and rows[0][0] == f"v{duckdb.__version__}"
    assert result.stdout.splitlines()[-1] == "1 rows"


def test_zero_rows_print_the_header_and_the_count(sample_lake: Path) -> None:
    sql = "select coin_id, current_price from silver.market_snapshots where coin_id = 'nope'"
    result = query(sample_lake, sql)
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["coin_id", "current_price"], [])
    assert result.stdout.splitlines()[-1] == "0 rows"


@pytest.mark.parametrize(
    ("sql", "line"),
    [
        (
            "select * from gold.coin_dayly",
            "error: Query failed: Catalog Error: Table with name coin_dayly does not exist! Did "
            'you mean "coin_daily"? (the lake\'s tables: `cryptolake query "show all tables"`)',
        ),
        (
            "selec 1",
            'error: Query failed: Parser Error: syntax error at or near "selec" LINE 1: selec 1',
        ),
        (
            "select 'a'::int",
            "error: Query failed: Conversion Error: Could not convert string 'a' to INT32 "
            "LINE 1: SELECT CAST('a' AS INTEGER)",
        ),
    ],
)
def test_a_duckdb_error_is_one_line_without_its_caret(
    sample_lake: Path, sql: str, line: str
) -> None:
    # DuckDB's message spans lines ("LINE 1: ..." and a caret under it): joined, caret dropped.
    assert refused(query(sample_lake, sql)) == line


def test_table_shows_every_stored_digit(sample_lake: Path) -> None:
    result = query(sample_lake, TOP5_SQL)
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["coin_id", "current_price", "market_cap"], TOP5)
    assert result.stdout.splitlines()[-1] == "5 rows"


def test_table_shows_small_prices_as_stored(sample_lake: Path) -> None:
    result = query(sample_lake, SMALL_PRICES_SQL)
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["coin_id", "current_price"], SMALL_PRICES)


def test_table_shows_a_float_sum_exactly(sample_lake: Path) -> None:
    result = query(sample_lake, "select 0.1::double + 0.2::double as d")
    assert table(result.stdout) == (["d"], [["0.30000000000000004"]])


def test_a_narrow_terminal_gets_a_wider_table_not_cut_values(sample_lake: Path) -> None:
    # A real process: the console reads COLUMNS when it starts.
    result = run_cli("query", "--lake", str(sample_lake), TOP5_SQL, env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert table(result.stdout) == (["coin_id", "current_price", "market_cap"], TOP5)
    for coin_id, price, market_cap in TOP5:
        assert re.search(rf"│ {coin_id} +│ +{price} │ +{market_cap} │", result.stdout)
    assert max(len(line) for line in result.stdout.splitlines()) > 40


def test_json_is_one_array_with_iso_timestamps(sample_lake: Path) -> None:
    sql = (
        "select coin_id, current_price, market_cap, snapshot_at from silver.market_snapshots "
        "order by market_cap desc limit 5"
    )
    result = query(sample_lake, sql, "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert [[r["coin_id"], str(r["current_price"]), str(r["market_cap"])] for r in rows] == TOP5
    assert all(ISO_UTC.match(r["snapshot_at"]) for r in rows), rows
    assert len({r["snapshot_at"] for r in rows}) == 1  # one snapshot


def test_json_nests_a_json_column(sample_lake: Path) -> None:
    result = query(sample_lake, "select * from meta.runs", "json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    assert run["status"] == "success" and run["is_sample"] is True
    assert ISO_UTC.match(run["started_at"]) and ISO_UTC.match(run["finished_at"])
    stages = run["stages"]
    assert isinstance(stages, list) and all(isinstance(s, dict) for s in stages)
    assert [s["stage"] for s in stages] == ["ingest", "history", "transform", "check", "publish"]
    assert stages[0]["rows"] == {"coins_markets": 100, "global": 1, "coins_categories": 90}


def test_csv_parses_with_the_right_header(sample_lake: Path) -> None:
    result = query(sample_lake, TOP5_SQL, "csv")
    assert result.exit_code == 0, result.output
    reader = csv.reader(io.StringIO(result.stdout))
    header, *rows = list(reader)
    assert header == ["coin_id", "current_price", "market_cap"]
    assert [(r[0], float(r[1]), float(r[2])) for r in rows] == [
        (coin_id, float(price), float(cap)) for coin_id, price, cap in TOP5
    ]


def test_rich_markup_in_a_value_is_printed_literally(sample_lake: Path) -> None:
    result = query(sample_lake, "select '[bold]x[/]' as v, '[red]' as w, '[/]' as z")
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["v", "w", "z"], [["[bold]x[/]", "[red]", "[/]"]])


def test_rich_markup_in_a_column_name_is_printed_literally(sample_lake: Path) -> None:
    result = query(sample_lake, """select 1 as "[b]h[/b]", 2 as "[red]", 3 as "[/]" """)
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["[b]h[/b]", "[red]", "[/]"], [["1", "2", "3"]])


def test_two_columns_of_one_name_are_both_printed(sample_lake: Path) -> None:
    result = query(sample_lake, "select 1 as a, 2 as a")
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == (["a", "a"], [["1", "2"]])


def test_query_reads_its_sql_from_a_file_or_stdin(sample_lake: Path, tmp_path: Path) -> None:
    sql_file = tmp_path / "top.sql"
    sql_file.write_text("-- the top coin\n" + TOP5_SQL.replace("limit 5", "limit 1") + "\n")

    from_file = run_cli(
        "query", "--lake", str(sample_lake), "--file", str(sql_file), "--format", "csv"
    )
    from_stdin = run_cli(
        "query", "--lake", str(sample_lake), "-f", "-", "--format", "csv", stdin=TOP5_SQL
    )

    assert from_file.returncode == 0, from_file.stderr
    top1 = list(csv.reader(io.StringIO(from_file.stdout)))
    assert from_stdin.returncode == 0, from_stdin.stderr
    top5 = list(csv.reader(io.StringIO(from_stdin.stdout)))
    assert top1[0] == top5[0] == ["coin_id", "current_price", "market_cap"]
    assert [(r[0], float(r[1]), float(r[2])) for r in top5[1:]] == [
        (c, float(p), float(m)) for c, p, m in TOP5
    ]
    assert top1[1:] == top5[1:2]


def test_csv_writes_nested_values_as_json_text(sample_lake: Path) -> None:
    result = invoke(
        "query",
        "--lake",
        str(sample_lake),
        "--format",
        "csv",
        "select [1, 2] as ids, {'a': 1.5, 'b': null} as pair, 'x,y' as text",
    )

    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["ids", "pair", "text"],
        ["[1, 2]", '{"a": 1.5, "b": null}', "x,y"],
    ]
