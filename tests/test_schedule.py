"""Schedules and the schedule loop, on a fake clock: no test sleeps (bar one signal delivery)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cryptolake.errors import ConfigError, LakeError
from cryptolake.schedule import ScheduleEvent, run_schedule, stop_on_signals
from cryptolake.schedule_spec import CronSchedule, IntervalSchedule, Schedule, parse_schedule


def at(text: str) -> datetime:
    """`2026-02-15 05:59` (or with seconds) as a UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron_next(expression: str, start: str, count: int = 1) -> list[datetime]:
    """The next `count` run times of `expression` after `start`."""
    schedule = parse_schedule(cron=expression)
    times, t = [], at(start)
    for _ in range(count):
        t = schedule.next_after(t)
        times.append(t)
    return times


# --- interval ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "start", "expected"),
    [
        ("6h", "2026-02-15 05:59", "2026-02-15 06:00"),
        ("6h", "2026-02-15 06:00", "2026-02-15 12:00"),  # strictly after
        ("6h", "2026-02-15 18:00:01", "2026-02-16 00:00"),
        ("1d", "2026-02-15 15:47:12", "2026-02-16 00:00"),
        ("30m", "2026-02-15 15:47:12", "2026-02-15 16:00"),
        ("1h30m", "2026-02-15 00:00", "2026-02-15 01:30"),
        ("90s", "2026-02-15 00:00", "2026-02-15 00:01:30"),
        ("90s", "2026-02-15 00:01:30", "2026-02-15 00:03:00"),
    ],
)
def test_interval_is_anchored_to_utc_midnight(every: str, start: str, expected: str) -> None:
    assert parse_schedule(every=every).next_after(at(start)) == at(expected)


def test_interval_accepts_other_timezones_and_rejects_naive_times() -> None:
    schedule = parse_schedule(every="6h")
    tokyo = at("2026-02-15 05:59").astimezone(timezone(timedelta(hours=9)))
    assert schedule.next_after(tokyo) == at("2026-02-15 06:00")
    assert schedule.next_after(tokyo).tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        schedule.next_after(datetime(2026, 2, 15, 5, 59))


@pytest.mark.parametrize(
    ("every", "description"),
    [("6h", "every 6h"), ("1h30m", "every 1h30m"), ("90s", "every 1m30s"), ("1d", "every 1d")],
)
def test_interval_describe(every: str, description: str) -> None:
    schedule = parse_schedule(every=every)
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.describe() == description


@pytest.mark.parametrize("every", ["0h", "0d0h0m0s", "6x", "", "  ", "h", "30m1h", "-6h", "400d"])
def test_invalid_every_names_the_flag_and_shows_an_example(every: str) -> None:
    with pytest.raises(ConfigError, match=r"--every .*for example --every 6h"):
        parse_schedule(every=every)


# --- cron --------------------------------------------------------------------------------------


def test_cron_every_15_minutes() -> None:
    assert cron_next("*/15 * * * *", "2026-02-15 15:47:12", 3) == [
        at("2026-02-15 16:00"),
        at("2026-02-15 16:15"),
        at("2026-02-15 16:30"),
    ]


def test_cron_every_6_hours_matches_the_old_dagster_schedule() -> None:
    assert cron_next("0 */6 * * *", "2026-02-15 05:59", 3) == [
        at("2026-02-15 06:00"),
        at("2026-02-15 12:00"),
        at("2026-02-15 18:00"),
    ]


def test_cron_ranges_steps_and_lists() -> None:
    # 09:00 and 17:00 on Monday to Friday; 2026-02-13 is a Friday.
    assert cron_next("0 9,17 * * 1-5", "2026-02-13 12:00", 3) == [
        at("2026-02-13 17:00"),
        at("2026-02-16 09:00"),
        at("2026-02-16 17:00"),
    ]
    assert cron_next("10-30/10 8-9 * * *", "2026-02-15 08:20", 4) == [
        at("2026-02-15 08:30"),
        at("2026-02-15 09:10"),
        at("2026-02-15 09:20"),
        at("2026-02-15 09:30"),
    ]


def test_cron_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # The 1st and 15th of the month, and every Monday: 2026-03-01 is a Sunday.
    assert cron_next("0 0 1,15 * 1", "2026-02-28 12:00", 4) == [
        at("2026-03-01 00:00"),
        at("2026-03-02 00:00"),
        at("2026-03-09 00:00"),
        at("2026-03-15 00:00"),
    ]


def test_cron_names_of_months_and_weekdays() -> None:
    # croniter reads names as cron does; 2026-02-16 is a Monday.
    assert cron_next("0 0 * feb mon", "2026-02-10 00:00", 2) == [
        at("2026-02-16 00:00"),
        at("2026-02-23 00:00"),
    ]


@pytest.mark.parametrize("sunday", ["0", "7"])
def test_cron_sunday_is_0_and_7(sunday: str) -> None:
    # 2026-02-15 is a Sunday.
    assert cron_next(f"30 6 * * {sunday}", "2026-02-10 00:00", 2) == [
        at("2026-02-15 06:30"),
        at("2026-02-22 06:30"),
    ]


def test_cron_weekday_range_through_7_wraps_to_sunday() -> None:
    assert cron_next("0 12 * * 6-7", "2026-02-13 00:00", 3) == [
        at("2026-02-14 12:00"),  # Saturday
        at("2026-02-15 12:00"),  # Sunday
        at("2026-02-21 12:00"),
    ]


def test_cron_month_and_year_rollover() -> None:
    assert cron_next("0 0 1 * *", "2026-01-31 23:59", 2) == [
        at("2026-02-01 00:00"),
        at("2026-03-01 00:00"),
    ]
    assert cron_next("59 23 31 * *", "2026-11-30 00:00", 2) == [
        at("2026-12-31 23:59"),
        at("2027-01-31 23:59"),
    ]


def test_cron_leap_day_waits_for_the_next_leap_year() -> None:
    assert cron_next("0 0 29 2 *", "2027-01-01 00:00", 2) == [
        at("2028-02-29 00:00"),
        at("2032-02-29 00:00"),
    ]


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30,31 2 *", "0 0 31 4,6,9,11 *"])
def test_cron_that_can_never_fire_is_rejected(expression: str) -> None:
    with pytest.raises(ConfigError, match=r"--cron .* never fires.*for example --cron"):
        parse_schedule(cron=expression)


def test_cron_impossible_day_of_month_with_a_weekday_still_fires_on_the_weekday() -> None:
    # Both day fields restricted: OR, so every Monday of February fires.
    assert cron_next("0 0 31 2 1", "2026-02-01 00:00") == [at("2026-02-02 00:00")]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 */6 * *", "needs 5 fields .* got 4"),
        ("0 */6 * * * *", "needs 5 fields .* got 6"),
        ("", "needs 5 fields .* got 0"),
        ("60 * * * *", "minute field '60' is invalid \\(out of range\\)"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 0 * *", "day-of-month field '0'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day-of-week field '8'"),
        ("*/0 * * * *", "minute field '\\*/0' is invalid \\(not cron syntax\\)"),
        ("0 0 * JANUARY *", "month field 'JANUARY'"),
        ("0 0 * * 1,,2", "day-of-week field '1,,2'"),
    ],
)
def test_invalid_cron_names_the_flag_and_field(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"--cron.*{message}.*for example --cron '0 \*/6"):
        parse_schedule(cron=expression)


def test_cron_describe_normalises_whitespace() -> None:
    schedule = parse_schedule(cron="  0  */6 * * * ")
    assert isinstance(schedule, CronSchedule)
    assert schedule.describe() == "cron 0 */6 * * *"


# --- daily and parse_schedule ------------------------------------------------------------------


def test_daily_runs_once_a_day_at_the_given_utc_time() -> None:
    schedule = parse_schedule(daily="00:30")
    assert schedule.describe() == "daily at 00:30 UTC"
    assert schedule.next_after(at("2026-02-15 00:29")) == at("2026-02-15 00:30")
    assert schedule.next_after(at("2026-02-15 00:30")) == at("2026-02-16 00:30")
    assert parse_schedule(daily="7:05").next_after(at("2026-02-15 08:00")) == at("2026-02-16 07:05")


@pytest.mark.parametrize("daily", ["24:00", "00:60", "0030", "", "6pm", "1:2"])
def test_invalid_daily_names_the_flag(daily: str) -> None:
    with pytest.raises(ConfigError, match=r"--daily .*for example --daily 00:30"):
        parse_schedule(daily=daily)


@pytest.mark.parametrize(
    ("flags", "got"),
    [({}, "none"), ({"every": "6h", "cron": "0 * * * *"}, "--every and --cron")],
)
def test_exactly_one_schedule_flag(flags: dict[str, str], got: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"exactly one of --every, --cron or --daily \(got {got}"
    ):
        parse_schedule(**flags)


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class FakeClock:
    """A UTC clock that only moves when the loop waits or a job says it took time."""

    now: datetime
    waits: list[float] = field(default_factory=list)
    on_wait: Callable[[], None] | None = None

    def clock(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        if self.on_wait is not None:
            self.on_wait()
        return False


@dataclass
class Recorder:
    """A job and an event callback that remember what happened when."""

    clock: FakeClock
    outcomes: list[BaseException | timedelta | None] = field(default_factory=list)
    ran_at: list[datetime] = field(default_factory=list)
    events: list[ScheduleEvent] = field(default_factory=list)

    def job(self) -> None:
        self.ran_at.append(self.clock.now)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, timedelta):  # the run takes this long
            self.clock.now += outcome
        elif isinstance(outcome, BaseException):
            raise outcome

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def run(
    schedule: Schedule,
    clock: FakeClock,
    recorder: Recorder,
    *,
    stop: threading.Event | None = None,
    max_runs: int | None = 3,
) -> tuple[int, int, int]:
    summary = run_schedule(
        schedule,
        job=recorder.job,
        stop=stop or threading.Event(),
        clock=clock.clock,
        wait=clock.wait,
        on_event=recorder.events.append,
        max_runs=max_runs,
    )
    return summary.runs, summary.failures, summary.skipped


def test_loop_runs_at_each_slot() -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock, outcomes=[timedelta(minutes=5)])

    assert run(parse_schedule(every="6h"), clock, recorder) == (3, 0, 0)

    assert recorder.ran_at == [
        at("2026-02-15 06:00"),
        at("2026-02-15 12:00"),
        at("2026-02-15 18:00"),
    ]
    assert recorder.kinds() == ["next", "started", "finished"] * 3 + ["stopped"]
    first = recorder.events[0]
    assert (first.at, first.next_at) == (at("2026-02-15 05:00"), at("2026-02-15 06:00"))
    assert first.detail == "next run at 2026-02-15 06:00 UTC (every 6h)"
    assert recorder.events[2].detail == "run 1 finished in 5m"
    assert max(clock.waits) <= 60  # long waits are chunked to re-check the wall clock


def test_cryptolake_error_is_reported_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock, outcomes=[None, LakeError("Lake is locked."), None])

    assert run(parse_schedule(every="6h"), clock, recorder) == (3, 1, 0)

    assert len(recorder.ran_at) == 3
    failed = [e for e in recorder.events if e.kind == "failed"]
    assert [(e.at, e.detail) for e in failed] == [
        (at("2026-02-15 12:00"), "run 2 failed: Lake is locked.")
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a user error, no trace


def test_unexpected_error_is_logged_with_traceback_counted_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock, outcomes=[RuntimeError("bug at 3 am"), RuntimeError("again")])

    assert run(parse_schedule(every="6h"), clock, recorder) == (3, 2, 0)

    assert recorder.kinds().count("failed") == 2
    assert recorder.events[2].detail == (
        "run 1 failed with an unexpected error: RuntimeError: bug at 3 am"
    )
    errors = [r for r in caplog.records if r.name == "cryptolake.schedule"]
    assert len(errors) == 2
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in errors)


def test_keyboard_interrupt_in_a_job_is_not_swallowed() -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock, outcomes=[KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        run(parse_schedule(every="6h"), clock, recorder)


def test_overrun_skips_missed_slots_without_catching_up() -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    # The 06:00 run takes 13 hours: the 12:00 and 18:00 slots pass while it runs.
    recorder = Recorder(clock, outcomes=[timedelta(hours=13)])

    assert run(parse_schedule(every="6h"), clock, recorder, max_runs=2) == (2, 0, 2)

    assert recorder.ran_at == [at("2026-02-15 06:00"), at("2026-02-16 00:00")]
    skipped = next(e for e in recorder.events if e.kind == "skipped")
    assert (skipped.at, skipped.next_at) == (at("2026-02-15 19:00"), at("2026-02-16 00:00"))
    assert skipped.detail == "skipped 2 run(s) missed while run 1 overran"


def test_run_ending_exactly_on_the_next_slot_runs_it_without_skipping() -> None:
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock, outcomes=[timedelta(hours=6)])

    assert run(parse_schedule(every="6h"), clock, recorder, max_runs=2) == (2, 0, 0)

    assert recorder.ran_at == [at("2026-02-15 06:00"), at("2026-02-15 12:00")]


def test_stop_during_the_wait_exits_without_running() -> None:
    stop = threading.Event()
    clock = FakeClock(at("2026-02-15 05:00"), on_wait=stop.set)
    recorder = Recorder(clock)

    assert run(parse_schedule(every="6h"), clock, recorder, stop=stop, max_runs=None) == (0, 0, 0)

    assert recorder.ran_at == []
    assert len(clock.waits) == 1  # one wait, interrupted; no further waiting
    assert recorder.kinds() == ["next", "stopped"]
    assert recorder.events[-1].at == at("2026-02-15 05:01")


def test_stop_set_before_start_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock)

    assert run(parse_schedule(every="6h"), clock, recorder, stop=stop, max_runs=None) == (0, 0, 0)

    assert clock.waits == []
    assert recorder.kinds() == ["stopped"]


def test_stop_during_a_job_exits_after_that_job() -> None:
    stop = threading.Event()
    clock = FakeClock(at("2026-02-15 05:00"))
    recorder = Recorder(clock)

    def job() -> None:
        recorder.job()
        stop.set()  # e.g. SIGTERM arrives mid-run: the job finishes its stage and returns

    summary = run_schedule(
        parse_schedule(every="6h"),
        job=job,
        stop=stop,
        clock=clock.clock,
        wait=clock.wait,
        on_event=recorder.events.append,
    )

    assert (summary.runs, summary.failures, summary.skipped) == (1, 0, 0)
    assert recorder.ran_at == [at("2026-02-15 06:00")]
    assert recorder.kinds() == ["next", "started", "finished", "stopped"]


def test_default_wait_is_the_stop_event() -> None:
    # No `wait` given: stop.wait is used, so a stop set beforehand ends the loop at once.
    stop = threading.Event()
    stop.set()
    summary = run_schedule(parse_schedule(every="1d"), job=lambda: None, stop=stop)
    assert (summary.runs, summary.failures, summary.skipped) == (0, 0, 0)


def test_max_runs_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        run_schedule(
            parse_schedule(every="6h"), job=lambda: None, stop=threading.Event(), max_runs=0
        )


def test_cron_loop_over_a_month_boundary() -> None:
    clock = FakeClock(at("2026-02-27 12:00"))
    recorder = Recorder(clock)

    assert run(parse_schedule(cron="0 0 1,28 * *"), clock, recorder) == (3, 0, 0)

    assert recorder.ran_at == [
        at("2026-02-28 00:00"),
        at("2026-03-01 00:00"),
        at("2026-03-28 00:00"),
    ]


# --- signals -----------------------------------------------------------------------------------


def test_sigterm_sets_the_event_and_the_old_handler_comes_back() -> None:
    received: list[int] = []

    def previous(signum: int, frame: object) -> None:
        received.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        stop = threading.Event()
        with stop_on_signals(stop) as event:
            assert event is stop
            assert signal.getsignal(signal.SIGTERM) is not previous
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(5)  # set by the relay thread, normally within microseconds
        assert signal.getsignal(signal.SIGTERM) is previous
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert received == []  # our handler, not the old one, got the signal
    finally:
        signal.signal(signal.SIGTERM, original)


def test_second_sigint_raises_keyboard_interrupt() -> None:
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt), stop_on_signals(stop):
        signal.raise_signal(signal.SIGINT)
        assert stop.wait(5)
        signal.raise_signal(signal.SIGINT)
    assert stop.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_on_signals_refuses_other_threads() -> None:
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with stop_on_signals(threading.Event()):
                pass
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert "main thread" in str(errors[0])
