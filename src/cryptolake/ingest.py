"""Ingestion: CoinGecko -> bronze. One run fetches every dataset and lands them together."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .bronze import BronzeFile, BronzeRun, Manifest, iso, latest_manifest, new_run_id
from .bronze_orphans import ORPHANS, sweep_orphans, sweep_window
from .coingecko import BodyProblem, CoinGeckoClient, Fetched
from .contracts import check_body, describe_missing
from .datasets import SNAPSHOT_DATASETS, snapshot_dataset_names
from .errors import ConfigError, ContractError, CryptolakeError, LakeError, RunStopped
from .fserrors import on_lake, os_error
from .lake import LakePaths
from .lock import held_here
from .paging import fetch_markets
from .progress import Progress, ProgressCallback, ignore_progress
from .replay import ReplayServer, sample_data
from .settings import Settings


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
    manifest_path: str  # where the run's manifest landed: a file, or an s3:// URL
    datasets: list[DatasetResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    notes: list[str] = field(default_factory=list)  # what happened worth telling (see paging)

    @property
    def records(self) -> int:
        return sum(d.records for d in self.datasets)


def _expect_list(fetched: Fetched) -> BodyProblem | None:
    if isinstance(fetched.data, list):
        return None
    return BodyProblem(f"expected a JSON array, got {type(fetched.data).__name__}")


def _expect_global(fetched: Fetched) -> BodyProblem | None:
    if isinstance(fetched.data, dict) and isinstance(fetched.data.get("data"), dict):
        return None
    return BodyProblem("expected an object with a 'data' object")


@on_lake("write bronze")
def ingest(
    settings: Settings,
    *,
    sample: bool = False,
    datasets: Sequence[str] = snapshot_dataset_names(),
    progress: ProgressCallback = ignore_progress,
    client: CoinGeckoClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    should_stop: Callable[[], bool] = lambda: False,
) -> IngestResult:
    """Fetch `datasets` from CoinGecko (or the bundled sample) into bronze as one run.

    Returns what landed. On failure the run is recorded as failed in its manifest, nothing
    becomes visible in bronze, and the error is raised again. `should_stop` is polled while
    waiting (a backoff, a rate limit): once true, the run stops with RunStopped.
    """
    known = snapshot_dataset_names()
    unknown = set(datasets) - set(known)
    if unknown or not datasets:
        raise ConfigError(
            f"Unknown dataset(s) {sorted(unknown)}; choose from {', '.join(known)} (history "
            "datasets are fetched by `cryptolake backfill`)."
        )
    refuse_mixing(LakePaths.of(settings), "sample" if sample else "api")
    if sample:
        if settings.ingest_currency != "usd":
            raise ConfigError(
                f"The bundled sample holds usd prices only; drop {settings.named('vs_currency')}."
            )
        with ReplayServer(sample_data()) as server:
            # Same code path as a live run, against a loopback server: no key, no throttle.
            replay_settings = settings.with_(api_url=server.api_url, api_key=None, rate=60_000.0)
            notes = []
            if "api_url" in settings.origins:
                notes.append(
                    f"--sample wins over {settings.named('api_url')}: the bundled recorded "
                    f"responses were replayed; {settings.api_url} was not asked."
                )
            with CoinGeckoClient(replay_settings) as replay_client:
                return _run(
                    replay_settings,
                    replay_client,
                    datasets=datasets,
                    progress=progress,
                    now=now,
                    source="sample",
                    notes=notes,
                )
    if settings.api_plan == "pro" and not settings.api_key:
        raise ConfigError(
            f"{settings.named('api_plan')} is pro, but CRYPTOLAKE_API_KEY is not set: a pro "
            "plan needs its key. Set it, or use the demo plan (keyless works too)."
        )
    if client is not None:
        return _run(settings, client, datasets=datasets, progress=progress, now=now, source="api")
    with CoinGeckoClient(settings, sleep=stoppable_sleep(should_stop)) as own_client:
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
    notes: list[str] | None = None,
) -> IngestResult:
    lake = LakePaths.of(settings)
    sweep_incoming(lake)
    started_at = now()
    # Holding the lake lock, no other run is landing: every orphan is a killed run's.
    orphans = sweep_orphans(
        lake,
        older_than_s=0 if held_here(lake) and not lake.remote else 3600.0,
        days=sweep_window(lake, today=started_at.date()),
    )
    run = BronzeRun(lake, run_id=new_run_id(started_at), started_at=started_at)
    results: list[DatasetResult] = []

    def manifest(status: str, error: str | None, notes: list[str]) -> Manifest:
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
            vs_currency=settings.ingest_currency,
            top=settings.top_coins,
            per_page=settings.per_page,
            files=list(run.files),
            error=error,
            notes=list(notes),
        )

    notes = list(notes or [])

    def stage(dataset: str, page: int, fetched: Fetched, *, records: int, refetch: int = 0) -> int:
        """Stage one body in the run, after checking it against its dataset's contract;
        returns its index in the run's files."""
        report = check_body(dataset, fetched.data)
        entry = run.stage(
            dataset,
            page,
            fetched,
            records=records,
            trimmed_ids=[],
            refetch=refetch,
            unknown_fields=list(report.unknown),
        )
        if not report.ok:
            raise ContractError(
                f"CoinGecko {fetched.path} sent a body without fields gold needs: "
                f"{describe_missing(report)}. The API may have renamed them; the run was not "
                f"landed and nothing was published. The body is kept at "
                f"{lake.store.uri(run.rejected_path(entry))}."
            )
        return len(run.files) - 1

    try:
        for declared in SNAPSHOT_DATASETS:
            dataset = declared.name
            if dataset not in datasets:
                continue
            t0 = time.perf_counter()
            before = len(run.files)
            if declared.fan_out == "pages":
                paged = fetch_markets(
                    settings,
                    client,
                    lambda page, fetched, _d=dataset, **kw: stage(_d, page, fetched, **kw),
                    progress,
                )
                notes.extend(paged.notes)
                for index, trimmed in paged.trims.items():
                    run.files[index] = replace(run.files[index], trimmed_ids=trimmed)
                records = paged.coins
            else:
                progress(Progress("ingest", dataset, 0, 1))
                fetched = client.get(
                    declared.path_for(),
                    declared.params_for(vs_currency=settings.ingest_currency) or None,
                    validate=_expect_global if dataset == "global" else _expect_list,
                )
                records = len(fetched.data) if isinstance(fetched.data, list) else 1
                stage(dataset, 1, fetched, records=records)
                progress(Progress("ingest", dataset, 1, 1, _rate_detail(client)))
            staged = run.files[before:]
            results.append(
                DatasetResult(
                    dataset=dataset,
                    pages=len(staged),
                    records=records,
                    bytes=sum(f.bytes for f in staged),
                    seconds=time.perf_counter() - t0,
                )
            )
        notes.extend(_new_fields(lake, run.files))
    except ContractError as exc:
        run.abandon(manifest("failed", str(exc), notes), keep_bodies=True)
        raise
    except CryptolakeError as exc:
        run.abandon(manifest("failed", str(exc), notes))
        raise
    except KeyboardInterrupt:
        run.abandon(manifest("failed", "interrupted (Ctrl-C)", notes))
        raise
    except OSError as exc:
        error = os_error(exc, doing=f"write bronze in {lake.location}")
        run.abandon(manifest("failed", str(error), notes))
        raise error from exc
    except BaseException as exc:
        # A bug: still record the run as failed, then let it propagate as it is.
        run.abandon(manifest("failed", f"{type(exc).__name__}: {exc}", notes))
        raise
    try:
        path = run.commit(manifest("complete", None, notes))
    except (OSError, CryptolakeError) as exc:
        landing: CryptolakeError = (
            exc if isinstance(exc, CryptolakeError) else _landing_error(exc, lake)
        )
        with contextlib.suppress(OSError):  # the disk may be too full for this too
            run.abandon(manifest("failed", str(landing), notes))
        raise landing from None
    return IngestResult(
        run_id=run.run_id,
        snapshot_at=started_at,
        source=source,
        manifest_path=path,
        datasets=results,
        requests=client.stats.requests,
        retries=client.stats.retries,
        notes=notes
        + (
            [
                f"moved {orphans:,} orphan bod{'y' if orphans == 1 else 'ies'} (left by a killed "
                f"run, listed by no manifest) to {lake.store.uri(ORPHANS)}"
            ]
            if orphans
            else []
        ),
    )


def _landing_error(exc: OSError, lake: LakePaths) -> LakeError:
    return os_error(exc, doing=f"land bronze in {lake.location}")


def _new_fields(lake: LakePaths, files: Sequence[BronzeFile]) -> list[str]:
    """Notes on fields the API added that the lake's previous complete run did not carry.

    Reported once, by the first run that sees them; every manifest records them all.
    """
    now: dict[str, set[str]] = {}
    for entry in files:
        now.setdefault(entry.dataset, set()).update(entry.unknown_fields)
    if not any(now.values()):
        return []
    before: dict[str, set[str]] = {}
    previous = latest_manifest(lake)
    for entry in previous.files if previous else []:
        before.setdefault(entry.dataset, set()).update(entry.unknown_fields)
    notes = []
    for dataset, fields in now.items():
        added = sorted(fields - before.get(dataset, set()))
        if added:
            notes.append(
                f"{dataset}: CoinGecko sent {len(added)} field(s) cryptolake does not read: "
                f"{', '.join(added)} (kept in bronze; silver ignores them)."
            )
    return notes


def stoppable_sleep(should_stop: Callable[[], bool]) -> Callable[[float], None]:
    """A sleep that gives up, raising RunStopped, as soon as `should_stop()` is true."""

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if should_stop():
                raise RunStopped(
                    "The run was stopped while it waited to ask CoinGecko again; the next run "
                    "fetches what this one did not."
                )
            time.sleep(min(left, 0.25))

    return sleep


def refuse_mixing(lake: LakePaths, source: str) -> None:
    """Sample data never mixes with live data in one lake, either way round."""
    latest = latest_manifest(lake)
    if latest is None or latest.source == source:
        return
    if source == "sample":
        raise LakeError(
            f"The lake {lake.location} holds live CoinGecko data; --sample would mix recorded 2023 "
            "prices into it. Give the sample a lake of its own: --lake lake-sample."
        )
    raise LakeError(
        f"The lake {lake.location} holds the bundled sample data; live data would mix with it. "
        "Use another lake for live runs (--lake), or delete this one."
    )


def sweep_incoming(lake: LakePaths, *, older_than_s: float = 3600.0) -> int:
    """Delete staging folders left by killed runs (untouched for an hour); returns how many.

    Their bodies never became bronze and their runs have no manifest, so nothing refers to
    them. The age limit keeps a run that is still fetching (without the lake lock, when the
    library is used directly) safe from another process's sweep.
    """
    if lake.remote or not lake.incoming.exists():
        return 0  # an object-store run stages nothing: its bodies are at their keys
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
