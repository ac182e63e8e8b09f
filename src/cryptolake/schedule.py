"""Scheduling for `cryptolake schedule`: when to run (interval, cron, daily) and the run loop.

Everything is in UTC. The loop never prints: it reports `ScheduleEvent`s to a callback, the CLI
renders them. Clock and wait are injectable, so tests run a day of schedule in microseconds.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Literal

from croniter import CroniterBadDateError, CroniterError, croniter

from .errors import ConfigError, CryptolakeError

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INTERVAL = timedelta(days=366)

EVERY_EXAMPLE = "--every 6h (also 30m, 1d, 90s, 1h30m)"
CRON_EXAMPLE = "--cron '0 */6 * * *' (minute hour day-of-month month day-of-week, in UTC)"
DAILY_EXAMPLE = "--daily 00:30 (HH:MM in UTC)"


def now_utc() -> datetime:
    """The current time, tz-aware in UTC: the default clock of `run_schedule`."""
    return datetime.now(UTC)


def _as_utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        # A naive time is ambiguous (local? UTC?); guessing would shift every run by hours.
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC)


def format_duration(duration: timedelta) -> str:
    """`1h30m`, `6h`, `1d`, `1m30s`, `0s`: whole seconds, largest units first."""
    seconds = max(0, round(duration.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_time(t: datetime) -> str:
    """`2026-02-15 06:00 UTC`; seconds are shown only when they are not zero."""
    t = _as_utc(t)
    return f"{t:%Y-%m-%d %H:%M:%S} UTC" if t.second else f"{t:%Y-%m-%d %H:%M} UTC"


# --------------------------------------------------------------------------------------------
# Schedules


class Schedule(ABC):
    """When to run: `next_after(t)` is the first run time strictly after `t`, in UTC."""

    __slots__ = ()

    @abstractmethod
    def next_after(self, t: datetime) -> datetime:
        """The first run time strictly after `t` (tz-aware; naive raises ValueError)."""

    @abstractmethod
    def describe(self) -> str:
        """A short human description: `every 6h`, `cron 0 */6 * * *`, `daily at 00:30 UTC`."""


@dataclass(frozen=True, slots=True)
class IntervalSchedule(Schedule):
    """Every `period`, anchored to the Unix epoch (1970-01-01 00:00 UTC), not to start-up.

    So a period that divides a day fires at the same UTC times every day, counted from
    midnight: 6h at 00:00, 06:00, 12:00 and 18:00; 30m on the hour and half hour; 1d at
    midnight. Restarting the scheduler therefore never shifts the runs. A period that does not
    divide a day (7h, 90s) keeps a fixed rhythm from the epoch and drifts through the day.
    """

    period: timedelta

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise ValueError(f"period must be positive, got {self.period}")

    def next_after(self, t: datetime) -> datetime:
        slots = (_as_utc(t) - EPOCH) // self.period  # slots fully elapsed, exact integer maths
        return EPOCH + (slots + 1) * self.period

    def describe(self) -> str:
        return f"every {format_duration(self.period)}"


_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


@dataclass(frozen=True, slots=True)
class CronSchedule(Schedule):
    """A standard 5-field cron expression, evaluated in UTC by croniter. Build it with
    `CronSchedule.parse`.

    croniter reads it as cron does: `*`, `*/n`, `a-b`, `a-b/n`, lists, month and weekday names
    (JAN, MON), 0 and 7 both Sunday; when day-of-month and day-of-week are both restricted, a
    day matching either fires.
    """

    expression: str
    label: str = ""

    @classmethod
    def parse(cls, expression: str, *, label: str = "") -> CronSchedule:
        """Parse `expression`; raises ConfigError naming `--cron`, the field and an example."""
        parts = expression.split()
        shown = " ".join(parts)
        if len(parts) != 5:
            raise ConfigError(
                f"--cron needs 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(parts)} in {expression!r}; for example {CRON_EXAMPLE}."
            )
        for i, (name, text) in enumerate(zip(_CRON_FIELDS, parts, strict=True)):
            # Each field alone among stars, so the message can say which one is wrong.
            alone = " ".join(text if j == i else "*" for j in range(5))
            try:
                croniter(alone, EPOCH)
            except CroniterError as exc:
                reason = "out of range" if "out of range" in str(exc) else "not cron syntax"
                raise ConfigError(
                    f"--cron {shown!r}: {name} field {text!r} is invalid ({reason}); "
                    f"for example {CRON_EXAMPLE}."
                ) from None
        schedule = cls(expression=shown, label=label)
        schedule.next_after(EPOCH)  # one that never fires (Feb 30) is refused now
        return schedule

    def next_after(self, t: datetime) -> datetime:
        try:
            following: datetime = croniter(self.expression, _as_utc(t)).get_next(datetime)
        except CroniterBadDateError:
            raise ConfigError(
                f"--cron {self.expression!r} never fires; for example {CRON_EXAMPLE}."
            ) from None
        return following.astimezone(UTC)

    def describe(self) -> str:
        return self.label or f"cron {self.expression}"


# Units in this order, each at most once: 1d6h, 1h30m, 90s.
_EVERY = re.compile("".join(rf"(?:([0-9]{{1,12}}){unit})?" for unit in "dhms"))


def _parse_every(text: str) -> IntervalSchedule:
    compact = "".join(text.split()).lower()
    match = _EVERY.fullmatch(compact)
    if not compact or match is None:
        raise ConfigError(
            f"--every must be a duration of days, hours, minutes and seconds, "
            f"got {text!r}; for example {EVERY_EXAMPLE}."
        )
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s  # plain ints: 10**12 days cannot overflow here
    if seconds <= 0:
        raise ConfigError(
            f"--every must be longer than zero, got {text!r}; for example {EVERY_EXAMPLE}."
        )
    if seconds > MAX_INTERVAL.total_seconds():
        raise ConfigError(
            f"--every must be at most {format_duration(MAX_INTERVAL)}, got {text!r}; "
            f"for example {EVERY_EXAMPLE}."
        )
    return IntervalSchedule(timedelta(seconds=seconds))


_DAILY = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _parse_daily(text: str) -> CronSchedule:
    match = _DAILY.fullmatch(text.strip())
    hour, minute = (int(g) for g in match.groups()) if match else (-1, -1)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ConfigError(
            f"--daily must be a UTC time HH:MM, got {text!r}; for example {DAILY_EXAMPLE}."
        )
    return CronSchedule.parse(
        f"{minute} {hour} * * *", label=f"daily at {hour:02d}:{minute:02d} UTC"
    )


def parse_schedule(
    *, every: str | None = None, cron: str | None = None, daily: str | None = None
) -> Schedule:
    """The schedule from exactly one of the `--every`, `--cron`, `--daily` flags (None: not given).

    Raises ConfigError naming the flag, with a valid example, for anything invalid.
    """
    given = [
        flag
        for flag, value in (("--every", every), ("--cron", cron), ("--daily", daily))
        if value is not None
    ]
    if len(given) != 1:
        got = " and ".join(given) if given else "none"
        raise ConfigError(
            f"Give exactly one of --every, --cron or --daily (got {got}); "
            f"for example {EVERY_EXAMPLE}."
        )
    if every is not None:
        return _parse_every(every)
    if cron is not None:
        return CronSchedule.parse(cron)
    assert daily is not None
    return _parse_daily(daily)


# --------------------------------------------------------------------------------------------
# The loop

EventKind = Literal["next", "started", "finished", "failed", "skipped", "stopped"]


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    """One thing the loop did. `next_at` is the upcoming run time on `next` and `skipped`."""

    kind: EventKind
    at: datetime
    next_at: datetime | None
    detail: str


ScheduleCallback = Callable[[ScheduleEvent], None]


def ignore_events(_: ScheduleEvent) -> None:
    """The default callback: the loop runs silently."""


@dataclass(frozen=True, slots=True)
class ScheduleSummary:
    """What a `run_schedule` call did: runs started, of which failed, and slots skipped."""

    runs: int
    failures: int
    skipped: int


# Wall-clock re-check interval. Event.wait times out on a monotonic clock that stops while a
# machine is suspended, so one long wait could oversleep a slot by the length of the suspend.
MAX_WAIT_SECONDS = 60.0


def run_schedule(
    schedule: Schedule,
    *,
    job: Callable[[], object],
    stop: threading.Event,
    clock: Callable[[], datetime] = now_utc,
    wait: Callable[[float], object] | None = None,
    on_event: ScheduleCallback = ignore_events,
    max_runs: int | None = None,
    run_now: bool = False,
) -> ScheduleSummary:
    """Run `job` at each time of `schedule` until `stop` is set (or `max_runs` runs are done).

    The first run is the first slot after start-up, not start-up itself; with `run_now`, a
    run at start-up comes first (counted like any other). Before each wait an
    event `next` gives the run time. `wait(seconds)` defaults to `stop.wait`, so setting `stop`
    ends a wait at once and the loop returns without running again; `stop` set during a run
    ends the loop after `job` returns (the job itself decides how to wind down).

    Failures never end the schedule: a `CryptolakeError` from `job` is reported as a `failed`
    event and the loop goes on to the next slot. Any other exception is a bug, but a scheduler
    that dies on it at 3 am misses every later run, so it too is counted as failed, reported,
    and logged with its traceback through `logging`. Only BaseExceptions such as
    KeyboardInterrupt (see `stop_on_signals`) and SystemExit propagate.

    A run that overruns its next slot(s) does not cause a catch-up burst: the missed slots are
    skipped, counted, and reported in a `skipped` event; the next run is the next slot ahead.
    """
    if max_runs is not None and max_runs < 1:
        raise ConfigError(f"max runs must be at least 1, got {max_runs}.")
    wait_for = stop.wait if wait is None else wait
    runs = failures = skipped = 0

    def emit(kind: EventKind, detail: str, next_at: datetime | None = None) -> None:
        on_event(ScheduleEvent(kind=kind, at=_as_utc(clock()), next_at=next_at, detail=detail))

    def waited_until(target: datetime) -> bool:
        """Wait until `target`; False if `stop` was set first."""
        while not stop.is_set():
            remaining = (target - _as_utc(clock())).total_seconds()
            if remaining <= 0:
                return True
            wait_for(min(remaining, MAX_WAIT_SECONDS))
        return False

    slot = schedule.next_after(clock())
    reason = "stop requested"
    now_first = run_now
    while not stop.is_set():
        if now_first:
            now_first = False
            runs += 1
            started = _as_utc(clock())
            emit("started", f"run {runs} started (now, as asked)")
        else:
            emit("next", f"next run at {format_time(slot)} ({schedule.describe()})", slot)
            if not waited_until(slot):
                break
            runs += 1
            started = _as_utc(clock())
            emit("started", f"run {runs} started (slot {format_time(slot)})")
        try:
            outcome = job()
        except CryptolakeError as exc:
            failures += 1
            emit("failed", f"run {runs} failed: {exc}")
        except Exception as exc:
            failures += 1
            log.exception("Scheduled run %d failed with an unexpected error; continuing.", runs)
            emit(
                "failed", f"run {runs} failed with an unexpected error: {type(exc).__name__}: {exc}"
            )
        else:
            took = format_duration(_as_utc(clock()) - started)
            # A run that a stop request cut short (its status says so) is not "finished".
            ended = "stopped" if getattr(outcome, "status", None) == "stopped" else "finished"
            emit("finished", f"run {runs} {ended} in {took}")
        if stop.is_set():
            break
        if max_runs is not None and runs >= max_runs:
            reason = f"{max_runs} run(s) done"
            break
        # A slot that began while the job ran is missed; one starting just now still runs.
        now = _as_utc(clock())
        # After the start-up run, the first slot is still the next one (unless it overran).
        if not (runs == 1 and run_now):
            slot = schedule.next_after(slot)
        missed = 0
        while slot < now:
            slot, missed = schedule.next_after(slot), missed + 1
        if missed:
            skipped += missed
            emit("skipped", f"skipped {missed} run(s) missed while run {runs} overran", slot)
    emit("stopped", f"stopped after {runs} run(s), {failures} failed: {reason}")
    return ScheduleSummary(runs=runs, failures=failures, skipped=skipped)


# --------------------------------------------------------------------------------------------
# Signals


@contextmanager
def stop_on_signals(
    stop: threading.Event, *, on_signal: Callable[[str], None] | None = None
) -> Iterator[threading.Event]:
    """Within the block, SIGTERM and SIGINT set `stop`; the previous handlers come back after.
    `on_signal("SIGINT" | "SIGTERM")` is called (from a helper thread) for the first one.

    A second SIGINT (Ctrl-C) once stopping raises KeyboardInterrupt, the usual way out for a
    user who will not wait for the current run to wind down; a second SIGTERM changes nothing.

    Main thread only (Python delivers signals there and only it may install handlers):
    elsewhere this raises RuntimeError. The handler itself sets nothing: Event.set takes a
    lock the interrupted main thread may be holding (inside stop.wait), which would deadlock,
    as Python's signal docs warn. It writes a byte to a pipe and a helper thread sets `stop`.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("stop_on_signals() works only in the main thread")
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    open_ = True
    signalled = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal signalled
        if signum == signal.SIGINT and (signalled or stop.is_set()):  # is_set takes no lock
            raise KeyboardInterrupt
        signalled = True
        if open_:
            try:
                os.write(write_fd, bytes([signum]))
            except OSError:  # the pipe is full: earlier bytes will set `stop` anyway
                pass

    def relay() -> None:
        while received := os.read(read_fd, 512):  # b"" once the write end is closed
            if on_signal is not None and not stop.is_set():
                on_signal("SIGINT" if received[:1] == b"\x02" else "SIGTERM")
            stop.set()

    relay_thread = threading.Thread(target=relay, name="cryptolake-stop-on-signals", daemon=True)
    relay_thread.start()
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            # None: the old handler was not installed from Python; the default is closest.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        open_ = False
        os.close(write_fd)
        relay_thread.join()  # every signal received in the block has set `stop` by now
        os.close(read_fd)
