"""A disk that fills while bronze is staged, inside the bronze commit, inside silver and gold
(their data files and their catalog commits) (issue 15).

test_cli_lake_faults.py covers a disk that fills somewhere in a run's transform, and one so
full the lock cannot be taken. These place the fault: the lake lives on a small tmpfs (in a
mount namespace of the test's own; skipped where mounts are impossible) filled to leave a
chosen number of KB, so the write that fails is one the test picks. Each failure is one
`error:` line naming the lake and the full disk, exit 1; the copy of the lake taken right
after it shows nothing half-written (no body without its manifest, no run half in silver, gold
still the previous one); and once there is room, one plain run recovers and every invariant
holds. One script per module runs every step in order (a step's lake is the previous one's).
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptolake.bronze import Manifest

from ..lakes import lake_db
from ..test_cli_lake_faults import (
    DISK_FULL_FIX,
    Outcome,
    mounted,
    outcome,
    quoted,
    small_disk,
    step,
)
from .conftest import NO_HISTORY
from .invariants import (
    acknowledged,
    assert_in_silver_once,
    assert_invariants,
    assert_raw_glob_matches_manifests,
    latest_snapshots,
    silver_rows_per_run,
)

PAGE_KB = 4  # tmpfs allocates whole pages


@dataclass(frozen=True, slots=True)
class Swept:
    """A script's results: each step's outcome and the lake it left (a copy off the tmpfs)."""

    lake: Path  # where the lake was, on the tmpfs (what error lines name)
    results: Path

    def outcome(self, name: str) -> Outcome:
        return outcome(self.results, name)

    def after(self, name: str) -> Path:
        return self.results / f"lake-{name}"


class Script:
    """A mount-namespace script on a small disk holding a copy of `base`."""

    def __init__(self, tmp: Path, base: Path) -> None:
        self.disk = tmp / "disk"
        self.swept = Swept(self.disk / "lake", tmp / "results")
        self.swept.results.mkdir()
        self.text = small_disk(self.disk, self.swept.lake, base)

    def leave(self, kb: int) -> None:
        """Fill the disk so that only `kb` KB are left."""
        fill = quoted(self.disk / "fill")
        self.text += (
            f"rm -f {fill}\n"
            f"avail=$(df -k --output=avail {quoted(self.disk)} | tail -n 1)\n"
            f"dd if=/dev/zero of={fill} bs=1k count=$((avail - {kb})) 2>/dev/null || exit 95\n"
        )

    def sweep(self, steps: dict[str, int], *args: str) -> None:
        """Step by step: leave that many KB, and run `cryptolake *args` as that step."""
        for name, kb in steps.items():
            self.leave(kb)
            self.step(name, *args)

    def free(self) -> None:
        self.text += f"rm -f {quoted(self.disk / 'fill')}\n"

    def step(self, name: str, *args: str) -> None:
        """Run `cryptolake *args --lake <lake>`, then copy the lake off the disk as it is."""
        self.text += step(self.swept.results, name, *args, "--lake", self.swept.lake)
        self.text += f"cp -a {quoted(self.swept.lake, self.swept.after(name))}\n"

    def recover(self) -> Swept:
        """Free the disk, end with a plain `run` (step "again"), and run the script."""
        self.free()
        self.step("again", "run", "--sample", "--json")
        mounted(self.text, env=NO_HISTORY)
        return self.swept


def bodies_kb(manifest: Manifest) -> int:
    """The KB a snapshot run's bodies take on tmpfs."""
    pages = sum(-(-f.bytes // (PAGE_KB * 1024)) for f in manifest.files)
    return pages * PAGE_KB


def assert_disk_full_line(done: Outcome, lake: Path, doing: str) -> str:
    """Exit 1 and one `error:` line: `Cannot <doing>` ... the lake ... `disk full` ... the fix."""
    assert done.code == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    (line,) = errors
    assert line.startswith(f"error: Cannot {doing}"), line
    assert str(lake) in line, line
    assert "disk full" in line, line
    assert line.endswith(DISK_FULL_FIX), line
    return line


def assert_recovered(swept: Swept, acknowledged_before: dict[str, Manifest]) -> None:
    """The plain run after the faults succeeded, and every invariant holds."""
    again = swept.outcome("again")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "success"
    assert_invariants(swept.after("again"), acknowledged_before)


# --- bronze ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bronze(base_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """`ingest` on a disk with room for less than a body, for the bodies but not the
    manifest (the commit moves them, then fails), then for all; then a plain `run`."""
    (base,) = acknowledged(base_lake).values()
    script = Script(tmp_path_factory.mktemp("bronze-disk"), base_lake)
    bodies = bodies_kb(base)
    script.sweep(
        {"staging": 60, "commit": bodies + PAGE_KB, "room": bodies + 3 * PAGE_KB},
        "ingest",
        "--sample",
    )
    return script.recover()


@pytest.mark.parametrize(
    ("name", "doing"),
    [("staging", "write bronze"), ("commit", "land bronze")],
    ids=["staging", "commit"],
)
def test_disk_full_in_bronze_is_one_line_and_lands_nothing(
    bronze: Swept, base_lake: Path, name: str, doing: str
) -> None:
    assert_disk_full_line(bronze.outcome(name), bronze.lake, doing)
    after = bronze.after(name)
    # No new complete run, no body outside a complete manifest, no staged body left behind.
    assert set(acknowledged(after)) == set(acknowledged(base_lake))
    assert_raw_glob_matches_manifests(after)
    assert [p for p in (after / "bronze" / "_incoming").rglob("*") if p.is_file()] == []


def test_a_bronze_disk_with_room_lands_and_a_plain_run_recovers(bronze: Swept) -> None:
    room = bronze.outcome("room")
    assert room.code == 0, room.stderr
    landed = acknowledged(bronze.after("room"))
    assert len(landed) == 2
    assert_raw_glob_matches_manifests(bronze.after("room"))
    assert_recovered(bronze, landed)


# --- silver and gold ------------------------------------------------------------------------

# KB left: for a transform's silver, less than its first data files, or room for them but not
# the catalog commit; then, silver committed, for gold: too little for the catalog's shared
# memory, less than its data files, room for them but not the commit.
SILVER_STEPS = {"silver-files": 40, "silver-commit": 100}
GOLD_STEPS = {"gold-catalog": 20, "gold-files": 48, "gold-commit": 100}


@pytest.fixture(scope="module")
def transform(base_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """A new bronze run landed with room; `transform` on a disk too full at each of silver's
    places; silver committed with room; `transform` too full at each of gold's; a plain run."""
    script = Script(tmp_path_factory.mktemp("transform-disk"), base_lake)
    script.step("ingest", "ingest", "--sample")
    script.sweep(SILVER_STEPS, "transform")
    script.free()
    script.step("silver", "transform", "--stage", "silver")
    script.sweep(GOLD_STEPS, "transform")
    return script.recover()


@pytest.mark.parametrize(
    ("name", "names"),
    [("silver-files", "/silver/"), ("silver-commit", "/catalog.sqlite")],
    ids=["silver-files", "silver-commit"],
)
def test_disk_full_in_silver_is_one_line_and_silver_rolls_back_whole(
    transform: Swept, base_lake: Path, name: str, names: str
) -> None:
    assert transform.outcome("ingest").code == 0, transform.outcome("ingest").stderr
    line = assert_disk_full_line(transform.outcome(name), transform.lake, "build silver")
    assert f"{transform.lake}{names}" in line, line
    after = transform.after(name)
    (new_run,) = set(acknowledged(after)) - set(acknowledged(base_lake))
    # The new run is not in silver at all; the old ones are, once; gold is the old gold.
    assert new_run not in silver_rows_per_run(after)
    assert_in_silver_once(after, acknowledged(base_lake).values())
    with closing(lake_db(after)) as con, closing(lake_db(base_lake)) as base:
        assert latest_snapshots(con) == latest_snapshots(base)


@pytest.mark.parametrize(
    ("name", "doing", "names"),
    [
        # Too little room for the catalog's shared-memory file: SQLite says only "disk I/O
        # error"; the line must still say disk full, with the fix.
        ("gold-catalog", "", "/catalog.sqlite"),
        ("gold-files", "build gold", "/gold/"),
        ("gold-commit", "build gold", "/catalog.sqlite"),
    ],
    ids=["gold-catalog", "gold-files", "gold-commit"],
)
def test_disk_full_in_gold_is_one_line_and_gold_stays_the_previous_one(
    transform: Swept, base_lake: Path, name: str, doing: str, names: str
) -> None:
    assert transform.outcome("silver").code == 0, transform.outcome("silver").stderr
    line = assert_disk_full_line(transform.outcome(name), transform.lake, doing)
    assert f"{transform.lake}{names}" in line, line
    after = transform.after(name)
    # Silver holds the new run (committed before), gold is still the previous snapshot's.
    assert_in_silver_once(after, acknowledged(after).values())
    with closing(lake_db(after)) as con, closing(lake_db(base_lake)) as base:
        latest, previous = latest_snapshots(con), latest_snapshots(base)
    assert latest["silver"] != previous["silver"]
    assert {k: v for k, v in latest.items() if k != "silver"} == {
        k: v for k, v in previous.items() if k != "silver"
    }


def test_after_a_full_disk_in_silver_and_gold_a_plain_run_recovers(transform: Swept) -> None:
    assert_recovered(transform, acknowledged(transform.after("gold-commit")))
