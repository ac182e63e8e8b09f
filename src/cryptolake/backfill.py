"""History: a year of daily prices per coin, fetched per coin and committed per request.

`backfill` fetches what `history_plan` says is missing for the top N coins (or the coins
named), all of it; a run's `history` stage does the same within `settings.history_budget`
requests, newest gaps first, so a lake run every 6 hours completes its history by itself.

**A manifest per request.** Each response lands in bronze the moment it arrives: its body in
`bronze/<dataset>/ingest_date=YYYY-MM-DD/<request_id>-<coin>.json`, then its own manifest
`bronze/_runs/ingest_date=YYYY-MM-DD/<request_id>.json` (`kind: history`, with its dataset,
coin, `days` and parent run id; `<request_id>` is `<run_id>-h00001`, numbered in the run). A
backfill killed after 180 of 250 coins has committed 180 requests; the next one plans from
those manifests and asks only for the 70 left. Silver reads history manifests like any run.

Errors: a coin CoinGecko does not know (HTTP 404 `coin not found`) is skipped, with a
`skipped` manifest so it is not asked again for a week, and named in the result. Error 10012
(HTTP 401 to keyless and Demo keys: history beyond 365 days) clamps `days` to 365 with one
note. 429s, Retry-After and the request rate are the client's, as for every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .api_errors import TIME_RANGE_CODE
from .bronze import BronzeFile, Manifest, iso, new_run_id
from .bronze_requests import RequestLanding, history_body_path
from .coingecko import BodyProblem, CoinGeckoClient, Fetched
from .datasets import BY_NAME, KEYLESS_HISTORY_DAYS, Dataset
from .errors import ApiError, ConfigError
from .fserrors import on_lake
from .history_plan import (
    HistoryRequest,
    parse_coin_ids,
    plan_requests,
    read_coverage,
    top_coins,
)
from .ingest import refuse_mixing, stoppable_sleep
from .lake import LakePaths
from .progress import Progress, ProgressCallback, ignore_progress
from .replay import ReplayServer, sample_data
from .settings import Settings

log = logging.getLogger(__name__)

NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What a backfill or a history stage did."""

    run_id: str
    planned: int  # requests the plan held (before the budget)
    requests: int  # history requests answered (bodies landed, coins not found)
    bodies: int
    points: int  # daily points and candles in the bodies landed
    bytes: int
    coins: int  # distinct coins with a body landed
    not_found: list[str] = field(default_factory=list)
    left: int = 0  # requests planned but not made (the budget ran out)
    seconds: float = 0.0
    requests_per_minute: float = 0.0
    notes: list[str] = field(default_factory=list)


def _shape(declared: Dataset) -> Callable[[Fetched], BodyProblem | None]:
    def check(fetched: Fetched) -> BodyProblem | None:
        data = fetched.data
        if declared.name == "coin_ohlc":
            ok = isinstance(data, list)
        else:
            ok = isinstance(data, dict) and isinstance(data.get("prices"), list)
        if ok:
            return None
        return BodyProblem(
            "expected "
            + (
                "a JSON array"
                if declared.name == "coin_ohlc"
                else "an object with a 'prices' array"
            )
            + f", got {type(data).__name__}"
        )

    return check


def _points(data: object) -> int:
    if isinstance(data, list):
        return len(data)
    if isinstance(data, dict) and isinstance(data.get("prices"), list):
        return len(data["prices"])
    return 0


@on_lake("write bronze history")
def fetch_history(
    settings: Settings,
    *,
    days: int | None = None,
    top: int | None = None,
    coins: Sequence[str] | str | None = None,
    with_ohlc: bool = False,
    budget: int | None = None,
    sample: bool = False,
    run_id: str | None = None,
    progress: ProgressCallback = ignore_progress,
    client: CoinGeckoClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    should_stop: Callable[[], bool] = lambda: False,
) -> HistoryResult:
    """Fetch the missing daily history (and candles) of the top coins into bronze.

    `days` (default `settings.history_days`) is how far back history reaches; `top`
    (default `settings.top`) takes the top N of the latest snapshot, `coins` names coin
    ids instead; `budget` caps the requests (None: all, as `backfill`). Each body is
    committed to bronze as it arrives (see the module doc). Returns what landed; raises
    ApiError when the API fails for good (what landed before stays), LakeError without a
    snapshot to take the top coins from, ConfigError for bad ids.
    """
    lake = LakePaths.of(settings)
    days = days or settings.history_days
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}.")
    refuse_mixing(lake, "sample" if sample else "api")
    named = coins is not None
    ids = (
        parse_coin_ids(coins)
        if coins is not None
        else top_coins(lake, top if top is not None else settings.top_coins)
    )
    lake.root.mkdir(parents=True, exist_ok=True)
    currency = settings.ingest_currency
    started = now()
    plan = plan_requests(
        ids,
        read_coverage(lake, vs_currency=currency),
        today=started.date(),
        days=days,
        with_ohlc=with_ohlc,
        # Coins named on the command line are asked even if they were not found lately.
        retry_not_found=named,
    )
    chosen = plan if budget is None else plan[:budget]
    run_id = run_id or new_run_id(started)
    if sample:
        with ReplayServer(sample_data()) as server:
            replay = settings.with_(api_url=server.api_url, api_key=None, rate=60_000.0)
            with CoinGeckoClient(replay) as replay_client:
                return _fetch(
                    replay, replay_client, chosen, len(plan), run_id, "sample", progress, now
                )
    if client is not None:
        return _fetch(settings, client, chosen, len(plan), run_id, "api", progress, now)
    with CoinGeckoClient(settings, sleep=stoppable_sleep(should_stop)) as own:
        return _fetch(
            settings, own, chosen, len(plan), run_id, "api", progress, now, should_stop=should_stop
        )


def _fetch(
    settings: Settings,
    client: CoinGeckoClient,
    requests: Sequence[HistoryRequest],
    planned: int,
    run_id: str,
    source: str,
    progress: ProgressCallback,
    now: Callable[[], datetime],
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> HistoryResult:
    lake = LakePaths.of(settings)
    landing = RequestLanding(lake)
    t0 = time.perf_counter()
    first_request = client.stats.requests
    notes: list[str] = []
    not_found: list[str] = []
    coins: set[str] = set()
    bodies = points = size = passed = 0
    clamp: int | None = None
    total = len(requests)
    coin_total = len({r.coin_id for r in requests})
    done_coins: set[str] = set()
    interval = 60.0 / settings.rate
    try:
        for number, request in enumerate(requests, start=1):
            if should_stop():
                break
            left = total - number + 1
            elapsed = time.perf_counter() - t0
            pace = max(interval, elapsed / (number - 1)) if number > 1 else interval
            progress(
                Progress(
                    "history",
                    "coins",
                    len(done_coins),
                    coin_total,
                    f"{left:,} requests left, ETA {_clock(left * pace)} at {settings.rate:g}/min",
                )
            )
            declared = BY_NAME[request.dataset]
            asked = min(request.days, clamp) if clamp else request.days
            path = declared.path_for(request.coin_id)
            if request.coin_id in not_found:
                passed += 1  # its /market_chart just answered 404: no candles either
                continue
            fetched: Fetched | None = None
            while True:
                try:
                    fetched = client.get(
                        path,
                        declared.params_for(vs_currency=settings.ingest_currency, days=asked),
                        validate=_shape(declared),
                    )
                except ApiError as exc:
                    if exc.code == TIME_RANGE_CODE and asked > KEYLESS_HISTORY_DAYS:
                        clamp = asked = KEYLESS_HISTORY_DAYS
                        notes.append(
                            f"CoinGecko serves at most {KEYLESS_HISTORY_DAYS} days of history to "
                            f"this plan (error 10012): asked for {request.days}, clamped to "
                            f"{KEYLESS_HISTORY_DAYS}. A paid key (CRYPTOLAKE_API_PLAN=pro) serves "
                            "more."
                        )
                        continue
                    if exc.status != NOT_FOUND:
                        raise
                    not_found.append(request.coin_id)
                break
            entry = _land(landing, settings, run_id, number, request, asked, source, fetched, now)
            done_coins.add(request.coin_id)
            if entry is not None:
                bodies += 1
                points += entry.records
                size += entry.bytes
                coins.add(request.coin_id)
            # Commit now if the next request would wait anyway (a rate-limited API: each
            # request is committed as it arrives), else in groups of at most half a second.
            if landing.due or client.throttle.ready_in() > 0:
                landing.flush()
    finally:
        landing.flush()
    seconds = time.perf_counter() - t0
    made = client.stats.requests - first_request
    answered = landing.committed
    progress(Progress("history", "coins", len(done_coins), coin_total, f"{answered:,} requests"))
    return HistoryResult(
        run_id=run_id,
        planned=planned,
        requests=answered,
        bodies=bodies,
        points=points,
        bytes=size,
        coins=len(coins),
        not_found=not_found,
        left=planned - answered - passed,
        seconds=seconds,
        requests_per_minute=60.0 * made / seconds if seconds > 0 and made > 1 else 0.0,
        notes=notes,
    )


def _land(
    landing: RequestLanding,
    settings: Settings,
    run_id: str,
    number: int,
    request: HistoryRequest,
    days: int,
    source: str,
    fetched: Fetched | None,
    now: Callable[[], datetime],
) -> BronzeFile | None:
    """Land one answered request: its body now, its manifest at the next flush."""
    request_id = f"{run_id}-h{number:05d}"
    made_at = fetched.fetched_at if fetched else now()
    ingest_date = f"{made_at:%Y-%m-%d}"
    files: list[BronzeFile] = []
    if fetched is not None:
        files.append(
            BronzeFile.of(
                fetched,
                dataset=request.dataset,
                page=1,
                path=history_body_path(
                    dataset=request.dataset,
                    ingest_date=ingest_date,
                    request_id=request_id,
                    coin_id=request.coin_id,
                ),
                records=_points(fetched.data),
                coin_id=request.coin_id,
            )
        )
    manifest = Manifest(
        run_id=request_id,
        status="complete" if fetched is not None else "skipped",
        source=source,
        started_at=iso(made_at),
        finished_at=iso(now()),
        ingest_date=ingest_date,
        api_url="sample (bundled recorded responses)" if source == "sample" else settings.api_url,
        api_plan=settings.api_plan,
        keyed=bool(settings.api_key),
        vs_currency=settings.ingest_currency,
        top=0,
        per_page=0,
        files=files,
        error=None if fetched is not None else f"coin not found (HTTP 404): {request.coin_id}",
        kind="history",
        dataset=request.dataset,
        coin_id=request.coin_id,
        days=days,
        parent_run_id=run_id,
    )
    landing.land(manifest, fetched.body if fetched is not None else None)
    return files[0] if files else None


def _clock(seconds: float) -> str:
    """`1:02:03` or `4:05`."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
