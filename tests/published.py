"""Helpers for tests that publish to the real Postgres: build, publish, read back."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from cryptolake.backfill import fetch_history
from cryptolake.gold import GOLD_MODELS, build_gold
from cryptolake.ingest import ingest
from cryptolake.publish import HISTORY, STAGING, publish
from cryptolake.secret import Secret
from cryptolake.settings import Settings
from cryptolake.silver import build_silver

from .conftest import LakeTemplates
from .lakes import T0, land, one_snapshot, settings_for


def rebuild(lake: Path) -> None:
    build_silver(settings_for(lake))
    build_gold(settings_for(lake))


def target(lake: Path, dsn: str, schema: str) -> Settings:
    return settings_for(lake).with_(postgres_dsn=Secret(dsn), pg_schema=schema)


def fetch(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def state(dsn: str, schema: str) -> tuple[Any, ...]:
    """What a consumer sees, in one statement (one snapshot of the database)."""
    counts = ", ".join(
        f"(select count(*) from {schema}.{t})"
        for t in (STAGING, HISTORY, *GOLD_MODELS, "publish_log")
    )
    return fetch(
        dsn,
        f"select {counts}, (select max(snapshot_at)::text from {schema}.crypto_analytics_mart)",
    )[0]


class Boom(Exception):
    """A failure a test injects (from a progress callback)."""


def published_with_a_new_snapshot(
    templates: LakeTemplates,
    lake: Path,
    dsn: str,
    schema: str,
    *,
    after: timedelta = timedelta(hours=6),
) -> tuple[Settings, tuple[Any, ...]]:
    """Publish `lake` as `one_snapshot` builds it, then land and build a snapshot at
    T0 + `after`: a publish is pending.

    Both lakes are copies of the session's templates: a publish only reads the lake, so the
    one with the new snapshot (a copy of the first, a snapshot landed on it and built: the same
    catalog, one gold snapshot on) takes the first's place once that is published. Returns the
    settings and what consumers see before that pending publish.
    """
    templates.copy(one_snapshot, lake)
    settings = target(lake, dsn, schema)
    publish(settings)
    before = state(dsn, schema)
    shutil.rmtree(lake)
    templates.copy(one_snapshot_and_one_more(templates, after), lake)
    return settings, before


@cache
def one_snapshot_and_one_more(templates: LakeTemplates, after: timedelta) -> Callable[[Path], None]:
    """A builder (one per `after`, for `templates`): a copy of `one_snapshot`'s lake (its
    catalog, so its lake id), a snapshot landed at T0 + `after`, silver and gold built."""

    def build(lake: Path) -> None:
        templates.copy(one_snapshot, lake)
        land(lake, at=T0 + after)
        rebuild(lake)

    build.__name__ = f"one_snapshot_and_one_{int(after.total_seconds())}s_later"
    return build


def sample_lake_with_history(lake: Path) -> Path:
    """A lake as `run --sample` then `backfill --sample --top 5` leave it: the 2023 sample
    snapshot, and bitcoin's recorded 2021-04-16..05-15 daily history (the rest are 404s)."""
    settings = settings_for(lake)
    ingest(settings, sample=True)
    rebuild(lake)
    backfill_sample(lake)
    return lake


def backfill_sample(lake: Path, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """`backfill --sample --top 5` at `now`, then silver and gold."""
    fetch_history(settings_for(lake), top=5, sample=True, now=now)
    rebuild(lake)
