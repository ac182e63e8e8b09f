"""Ingestion: CoinGecko -> bronze. One run fetches every dataset and lands them together."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .bronze import BronzeRun, Manifest, iso, new_run_id
from .coingecko import CoinGeckoClient
from .errors import ConfigError, CryptolakeError
from .lake import DATASETS, LakePaths
from .progress import Progress, ProgressCallback, ignore_progress
from .replay import ReplayServer, sample_data
from .settings import Settings

MARKETS_PATH = "/coins/markets"
PRICE_CHANGE_WINDOWS = "1h,24h,7d,30d"


@dataclass(frozen=True, slots=True)
class DatasetResult:
    dataset: str
    pages: int
    records: int
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class IngestResult:
    run_id: str
    snapshot_at: datetime
    source: str
    manifest_path: Path
    datasets: list[DatasetResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    @property
    def records(self) -> int:
        return sum(d.records for d in self.datasets)


def _expect_list(data: Any) -> str | None:
    return None if isinstance(data, list) else f"expected a JSON array, got {type(data).__name__}"


def _expect_global(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        return None
    return "expected an object with a 'data' object"


def ingest(
    settings: Settings,
    *,
    sample: bool = False,
    datasets: Sequence[str] = DATASETS,
    progress: ProgressCallback = ignore_progress,
    client: CoinGeckoClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Fetch `datasets` from CoinGecko (or the bundled sample) into bronze as one run.

    Returns what landed. On failure the run is recorded as failed in its manifest, nothing
    becomes visible in bronze, and the error is raised again.
    """
    unknown = set(datasets) - set(DATASETS)
    if unknown or not datasets:
        raise ConfigError(
            f"Unknown dataset(s) {sorted(unknown)}; choose from {', '.join(DATASETS)}."
        )
    if sample:
        if settings.vs_currency != "usd":
            raise ConfigError("The bundled sample holds usd prices only; drop --vs-currency.")
        with ReplayServer(sample_data()) as server:
            # Same code path as a live run, against a loopback server: no key, no throttle.
            replay_settings = settings.with_(api_url=server.api_url, api_key=None, rate=60_000.0)
            with CoinGeckoClient(replay_settings) as replay_client:
                return _run(
                    replay_settings,
                    replay_client,
                    datasets=datasets,
                    progress=progress,
                    now=now,
                    source="sample",
                )
    if client is not None:
        return _run(settings, client, datasets=datasets, progress=progress, now=now, source="api")
    with CoinGeckoClient(settings) as own_client:
        return _run(
            settings, own_client, datasets=datasets, progress=progress, now=now, source="api"
        )


def _run(
    settings: Settings,
    client: CoinGeckoClient,
    *,
    datasets: Sequence[str],
    progress: ProgressCallback,
    now: Callable[[], datetime],
    source: str,
) -> IngestResult:
    lake = LakePaths.at(settings.lake)
    sweep_incoming(lake)
    started_at = now()
    run = BronzeRun(lake, run_id=new_run_id(started_at), started_at=started_at)
    results: list[DatasetResult] = []

    def manifest(status: str, error: str | None) -> Manifest:
        return Manifest(
            run_id=run.run_id,
            status="complete" if status == "complete" else "failed",
            source=source,
            started_at=iso(started_at),
            finished_at=iso(now()),
            ingest_date=run.ingest_date,
            api_url="sample (bundled recorded responses)"
            if source == "sample"
            else settings.api_url,
            api_plan=settings.api_plan,
            keyed=bool(settings.api_key),
            vs_currency=settings.vs_currency,
            top=settings.top,
            per_page=settings.per_page,
            files=list(run.files),
            error=error,
        )

    try:
        for dataset in DATASETS:
            if dataset not in datasets:
                continue
            t0 = time.perf_counter()
            before = len(run.files)
            if dataset == "coins_markets":
                _fetch_markets(settings, client, run, progress)
            else:
                endpoint = "/global" if dataset == "global" else "/coins/categories"
                progress(Progress("ingest", dataset, 0, 1))
                fetched = client.get(
                    endpoint, validate=_expect_global if dataset == "global" else _expect_list
                )
                records = len(fetched.data) if isinstance(fetched.data, list) else 1
                run.stage(dataset, 1, fetched, records=records, trimmed_ids=[])
                progress(Progress("ingest", dataset, 1, 1, _rate_detail(client)))
            staged = run.files[before:]
            results.append(
                DatasetResult(
                    dataset=dataset,
                    pages=len(staged),
                    records=sum(f.records - len(f.trimmed_ids) for f in staged),
                    bytes=sum(f.bytes for f in staged),
                    seconds=time.perf_counter() - t0,
                )
            )
    except CryptolakeError as exc:
        run.abandon(manifest("failed", str(exc)))
        raise
    except BaseException as exc:
        # A bug or Ctrl-C: still record the run as failed, then let it propagate as it is.
        run.abandon(manifest("failed", f"{type(exc).__name__}: {exc}"))
        raise
    path = run.commit(manifest("complete", None))
    return IngestResult(
        run_id=run.run_id,
        snapshot_at=started_at,
        source=source,
        manifest_path=path,
        datasets=results,
        requests=client.stats.requests,
        retries=client.stats.retries,
    )


def sweep_incoming(lake: LakePaths, *, older_than_s: float = 3600.0) -> int:
    """Delete staging folders left by killed runs (untouched for an hour); returns how many.

    Their bodies never became bronze and their runs have no manifest, so nothing refers to
    them. The age limit keeps a run that is still fetching (without the lake lock, when the
    library is used directly) safe from another process's sweep.
    """
    if not lake.incoming.exists():
        return 0
    swept = 0
    cutoff = time.time() - older_than_s
    for leftover in lake.incoming.iterdir():
        newest = max(
            (p.stat().st_mtime for p in leftover.rglob("*")), default=leftover.stat().st_mtime
        )
        if newest < cutoff:
            shutil.rmtree(leftover, ignore_errors=True)
            swept += 1
    return swept


def _rate_detail(client: CoinGeckoClient) -> str:
    return f"{client.requests_per_minute():.0f} req/min"


def _fetch_markets(
    settings: Settings, client: CoinGeckoClient, run: BronzeRun, progress: ProgressCallback
) -> None:
    """Pages 1, 2, ... of the same size until the top N are in, or a short page ends the list."""
    pages = math.ceil(settings.top / settings.per_page)
    kept = 0
    progress(Progress("ingest", "coins_markets", 0, pages))
    for page in range(1, pages + 1):
        fetched = client.get(
            MARKETS_PATH,
            {
                "vs_currency": settings.vs_currency,
                "order": "market_cap_desc",
                "per_page": settings.per_page,
                "page": page,
                "sparkline": "false",
                "price_change_percentage": PRICE_CHANGE_WINDOWS,
            },
            validate=_expect_list,
        )
        records: list[Any] = fetched.data
        room = settings.top - kept
        trimmed = [str(r.get("id")) for r in records[room:] if isinstance(r, dict)]
        run.stage("coins_markets", page, fetched, records=len(records), trimmed_ids=trimmed)
        kept += min(len(records), room)
        short = len(records) < settings.per_page
        progress(
            Progress(
                "ingest",
                "coins_markets",
                page,
                page if short else pages,
                f"{kept} coins, {_rate_detail(client)}",
            )
        )
        if short:
            break
