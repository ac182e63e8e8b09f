"""When `cryptolake schedule` runs: intervals, cron expressions and daily times, in UTC.

Parsed from `--every`, `--cron` and `--daily` (cron by croniter); each schedule answers the
first slot after a moment. The run loop that uses them is in schedule.py.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadDateError, CroniterError, croniter

from .errors import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INTERVAL = timedelta(days=366)

EVERY_EXAMPLE = "--every 6h (also 30m, 1d, 90s, 1h30m)"
CRON_EXAMPLE = "--cron '0 */6 * * *' (minute hour day-of-month month day-of-week, in UTC)"
DAILY_EXAMPLE = "--daily 00:30 (HH:MM in UTC)"


def now_utc() -> datetime:
    """The current time, tz-aware in UTC: the default clock of `run_schedule`."""
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
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
    t = as_utc(t)
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
        slots = (as_utc(t) - EPOCH) // self.period  # slots fully elapsed, exact integer maths
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
            following: datetime = croniter(self.expression, as_utc(t)).get_next(datetime)
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
