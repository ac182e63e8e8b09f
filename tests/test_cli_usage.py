"""Usage errors (an unknown flag, a missing value): one `error:` line, exit 2, never usage text."""

from __future__ import annotations

import json

from .clis import one_error_line, run_cli


def test_an_unknown_flag_is_one_line_pointing_at_help() -> None:
    result = run_cli("run", "--bogus")

    assert result.returncode == 2
    assert result.stdout == ""
    assert one_error_line(result.stderr).startswith("error: No such option: --bogus")
    assert result.stderr.rstrip().endswith("run --help`)")


def test_a_usage_error_with_json_still_prints_a_json_document() -> None:
    result = run_cli("run", "--json", "--top", "many")

    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["status"] == "failed"
    assert document["stages"] == []
    assert "--top" in document["error"]
    assert one_error_line(result.stderr).startswith("error: ")
