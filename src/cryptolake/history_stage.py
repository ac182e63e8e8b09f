"""A run's `history` stage: a budget of requests on the top coins' history gaps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .backfill import HistoryResult, fetch_history
from .errors import ApiError
from .progress import ProgressCallback
from .settings import Settings

if TYPE_CHECKING:
    from .pipeline import StageResult


def history_stage(
    settings: Settings,
    result: StageResult,
    *,
    run_id: str,
    sample: bool,
    progress: ProgressCallback,
    should_stop: Callable[[], bool],
) -> HistoryResult | None:
    """Spend at most `history_budget` requests on the top coins' history gaps.

    The snapshot is already in bronze: an API failure here (a rate limit that outlasts the
    retries) does not fail the run. The stage says so and the next run carries on from the
    requests that landed.
    """
    if settings.history_budget == 0:
        result.status = "skipped"
        result.summary = "history budget is 0"
        result.detail = f"{settings.named('history_budget')} is 0: no history requests"
        return None
    try:
        history = fetch_history(
            settings,
            budget=settings.history_budget,
            sample=sample,
            run_id=run_id,
            progress=progress,
            should_stop=should_stop,
        )
    except ApiError as exc:
        if not exc.transient:
            raise
        result.status = "skipped"
        result.summary = "API unavailable"
        result.detail = f"{exc} The next run fetches the history this one did not."
        return None
    result.rows = {"history_requests": history.requests, "history_points": history.points}
    result.summary = (
        f"{history.coins:,} coin(s), {history.points:,} points" if history.requests else "complete"
    )
    left = f", {history.left:,} requests left for later runs" if history.left else ""
    missing = f", {len(history.not_found)} coin(s) not found" if history.not_found else ""
    result.detail = (
        f"{history.requests:,} of {settings.history_budget:,} budgeted requests{missing}{left}"
        if history.planned
        else "every top coin's history has been asked for up to today"
    )
    result.status = "ok"
    return history
