"""cryptolake as a Dagster code location: `dagster dev -m cryptolake.orchestration`.

`defs` holds the lake's assets (bronze datasets, silver and gold tables, Postgres tables)
computed by the library's stages, the SQL checks as asset checks, the `snapshot_job` and
`history_job` on their `every_6_hours` and `daily` schedules, and the `cryptolake` resource
configured from the same `CRYPTOLAKE_*` environment as the CLI. Needs the extra:
`pip install 'cryptolake[dagster]'` (or `uv sync --extra dagster`).
"""

from __future__ import annotations

try:
    import dagster as dg
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "cryptolake.orchestration needs Dagster: install the extra with "
        "`pip install 'cryptolake[dagster]'` (or `uv sync --extra dagster` in a clone)."
    ) from exc

from .assets import history, ingest_snapshots, publish_tables, transform
from .resources import CryptolakeResource
from .schedules import daily, every_6_hours, history_job, snapshot_job
from .specs import OHLC_SPEC

ASSETS: list[dg.AssetsDefinition | dg.AssetSpec] = [
    ingest_snapshots,
    history,
    OHLC_SPEC,
    transform,
    publish_tables,
]

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[snapshot_job, history_job],
    schedules=[every_6_hours, daily],
    resources={"cryptolake": CryptolakeResource()},
)

__all__ = ["ASSETS", "CryptolakeResource", "defs"]
