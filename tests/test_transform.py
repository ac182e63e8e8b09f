"""Transforms racing on one lake: a conflicting commit is rerun from the top, never doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptolake.catalog import open_lake
from cryptolake.errors import CommitConflict
from cryptolake.ingest import ingest
from cryptolake.progress import Progress
from cryptolake.settings import Settings
from cryptolake.silver import build_silver
from cryptolake.transform import retry_conflicts


@pytest.mark.postgres
def test_a_commit_another_writer_beat_is_rerun_from_the_top(lake: Path, pg_catalog: str) -> None:
    settings = Settings.resolve(env={}, lake=lake, catalog=pg_catalog)
    ingest(settings, sample=True)
    lines: list[str] = []
    with open_lake(settings) as other:
        # Another machine's transform, committed while ours is mid-way through its batch.
        other.execute("begin")
        other.execute("update meta.commit_head set commits = commits + 1")

        committed: list[bool] = []

        def commit_the_other(p: Progress) -> None:
            if p.stage == "silver" and p.completed == 1 and not committed:
                other.execute("commit")
                committed.append(True)

        result = retry_conflicts(
            lambda: build_silver(settings, progress=commit_the_other),
            what="transform",
            on_retry=lines.append,
            sleep=lambda _: None,
        )
    assert lines == [
        "transform: another writer committed to the lake first; rerunning transform from "
        "the top (attempt 2 of 8)"
    ]
    assert len(result.runs) == 1
    with open_lake(settings, read_only=True) as con:
        rows = con.execute(
            "select count(*), count(distinct coin_id) from silver.market_snapshots"
        ).fetchone()
        runs = con.execute("select count(*) from silver.processed_runs").fetchone()
    assert rows == (100, 100) and runs == (1,)


def test_a_writer_that_keeps_losing_gives_up_with_one_error() -> None:
    tries: list[int] = []

    def always_beaten() -> None:
        tries.append(1)
        raise CommitConflict("Cannot build silver: another writer committed first (x).")

    with pytest.raises(CommitConflict, match="Gave up after 3 attempts"):
        retry_conflicts(always_beaten, what="transform", attempts=3, sleep=lambda _: None)
    assert len(tries) == 3
