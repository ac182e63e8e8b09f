"""The jobs and schedules of the code location, in UTC.

`snapshot_job` (every 6 hours, as `cryptolake schedule --every 6h`): the snapshot datasets into
bronze, then silver, gold and Postgres. `history_job` (daily, half an hour past midnight UTC,
after the day's first snapshot): the history budget's requests, then silver, gold and
Postgres. Both rebuild what changed only (silver reads the bronze runs it has not read; gold
recomputes from the first day that changed). Two runs at once wait on the lake's lock: the
second step is retried (see assets.step_errors).
"""

from __future__ import annotations

from dagster import AssetSelection, ScheduleDefinition, define_asset_job

from .assets import history, ingest_snapshots, publish_tables, transform

EVERY_6_HOURS = "0 */6 * * *"
DAILY = "30 0 * * *"

snapshot_job = define_asset_job(
    "snapshot_job",
    selection=AssetSelection.assets(ingest_snapshots, transform, publish_tables),
    description="A market snapshot into bronze, then silver, gold (audited) and Postgres.",
)
history_job = define_asset_job(
    "history_job",
    selection=AssetSelection.assets(history, transform, publish_tables),
    description="The history budget's requests into bronze, then silver, gold and Postgres.",
)
every_6_hours = ScheduleDefinition(
    name="every_6_hours",
    cron_schedule=EVERY_6_HOURS,
    execution_timezone="UTC",
    job=snapshot_job,
    description="A snapshot at 00:00, 06:00, 12:00 and 18:00 UTC.",
)
daily = ScheduleDefinition(
    name="daily",
    cron_schedule=DAILY,
    execution_timezone="UTC",
    job=history_job,
    description="The daily history top-up at 00:30 UTC.",
)
