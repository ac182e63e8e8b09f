"""The `cryptolake schedule` run loop: waits for each slot, runs, skips overruns, stops cleanly.

When it runs is schedule_spec.py. Everything is in UTC. The loop never prints: it reports
`ScheduleEvent`s to a callback, the CLI renders them. Clock and wait are injectable, so tests
run a day of schedule in microseconds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Literal

from .errors import ConfigError, CryptolakeError
from .schedule_spec import Schedule, as_utc, format_duration, format_time, now_utc

log = logging.getLogger(__name__)

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
        on_event(ScheduleEvent(kind=kind, at=as_utc(clock()), next_at=next_at, detail=detail))

    def waited_until(target: datetime) -> bool:
        """Wait until `target`; False if `stop` was set first."""
        while not stop.is_set():
            remaining = (target - as_utc(clock())).total_seconds()
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
            started = as_utc(clock())
            emit("started", f"run {runs} started (now, as asked)")
        else:
            emit("next", f"next run at {format_time(slot)} ({schedule.describe()})", slot)
            if not waited_until(slot):
                break
            runs += 1
            started = as_utc(clock())
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
            took = format_duration(as_utc(clock()) - started)
            # A run that a stop request cut short (its status says so) is not "finished".
            ended = "stopped" if getattr(outcome, "status", None) == "stopped" else "finished"
            emit("finished", f"run {runs} {ended} in {took}")
        if stop.is_set():
            break
        if max_runs is not None and runs >= max_runs:
            reason = f"{max_runs} run(s) done"
            break
        # A slot that began while the job ran is missed; one starting just now still runs.
        now = as_utc(clock())
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
