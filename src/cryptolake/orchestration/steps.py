"""What every step of the code location does around its stage: settings, lock, logs, errors.

`step()` resolves the settings, says which lake the step works on, holds the lake's lock as
the CLI's commands do, forwards the library's log lines (a retry of the API, a sweep of
orphans) to the step's Dagster log, and turns our errors into Dagster's, classified once:
transient ones ask for a retry while retries are left, any other fails the step with the
one-line message the CLI prints. Bugs propagate unchanged, with their traceback.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, Failure, RetryRequested

from ..errors import CommitConflict, CryptolakeError, LockError
from ..lock import stage_lock
from ..progress import Progress
from ..settings import Settings
from .resources import CryptolakeResource

# The Dagster concurrency pool of every step: with a limit of 1 (`dagster instance
# concurrency set cryptolake_lake 1`, or deploy/dagster.yaml) runs queue for the lake instead
# of meeting its lock.
POOL = "cryptolake_lake"
# Seconds between two progress lines of one task in a step's log.
PROGRESS_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class Retry:
    """How a step that failed for a reason that passes is retried: `times`, `wait` apart."""

    times: int
    wait_seconds: int


# A service down for a while (CoinGecko throttling or down, Postgres restarting): the client
# retried each request already, so a step retry comes a minute later. Another run holding
# the lake (a run of the other job, a CLI run): wait for it, up to half an hour.
SERVICE_RETRY = Retry(times=2, wait_seconds=60)
BUSY_RETRY = Retry(times=60, wait_seconds=30)


def retry_for(exc: CryptolakeError) -> Retry | None:
    """How to retry a step that raised `exc`, or None when running it again cannot help."""
    if isinstance(exc, LockError | CommitConflict):
        return BUSY_RETRY
    return SERVICE_RETRY if exc.transient else None


class LogProgress:
    """A progress callback writing a stage's progress to the step's log, at most a line per
    task every PROGRESS_EVERY seconds (and its last)."""

    def __init__(self, log: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self.last: dict[tuple[str, str], float] = {}

    def __call__(self, p: Progress) -> None:
        key, now = (p.stage, p.task), self.clock()
        done = p.total is not None and p.completed >= p.total
        if not done and now - self.last.get(key, float("-inf")) < PROGRESS_EVERY:
            return
        self.last[key] = now
        total = "?" if p.total is None else f"{p.total:,}"
        self.log.info(f"{p.stage} {p.task}: {p.completed:,} of {total} {p.detail}".rstrip())


class _ToStepLog(logging.Handler):
    """The library's log records, into the step's Dagster log at their level."""

    def __init__(self, log: Any) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        getattr(self.log, level)(record.getMessage())


@contextmanager
def _library_logs(log: Any) -> Iterator[None]:
    logger = logging.getLogger("cryptolake")
    handler, level = _ToStepLog(log), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def step(
    context: AssetExecutionContext,
    cryptolake: CryptolakeResource,
    name: str,
    *,
    creates_lake: bool = False,
    reads_only: bool = False,
) -> Iterator[Settings]:
    """The settings of step `name`, under the lake's lock, with our errors as Dagster's.

    Raises `dagster.RetryRequested` for a transient error while retries are left (see
    `retry_for`), else `dagster.Failure` with our message.
    """
    with _library_logs(context.log):
        try:
            settings = cryptolake.settings()
            context.log.info(f"lake {settings.lake_location} (catalog {settings.catalog_redacted})")
            holder = f"{context.run.run_id} (Dagster step {name})"
            with stage_lock(settings, holder, creates_lake=creates_lake, reads_only=reads_only):
                yield settings
        except CryptolakeError as exc:
            retry = retry_for(exc)
            if retry is not None and context.retry_number < retry.times:
                context.log.warning(
                    f"{exc} Retrying the step in {retry.wait_seconds} s "
                    f"(retry {context.retry_number + 1} of {retry.times})."
                )
                raise RetryRequested(
                    max_retries=retry.times, seconds_to_wait=retry.wait_seconds
                ) from None
            raise Failure(description=str(exc), allow_retries=False) from None


def commit_run_id(context: AssetExecutionContext) -> str:
    """How the lake's commits name this Dagster run (`status` shows it as the committer)."""
    return f"dagster-{context.run.run_id[:8]}"
