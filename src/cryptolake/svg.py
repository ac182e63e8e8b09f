"""Small inline-SVG charts for the HTML report: a donut, a line chart over days, bar lists.

Each function returns one `<svg>` element as text, sized by its viewBox so it scales down with
the page and never up (CSS caps it at its natural width). Every label is escaped here; callers
pass plain strings. Text inherits the page's font, so charts match the surrounding type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

MUTED = "#64748b"
GRID = "#e2e8f0"
AXIS = "#cbd5e1"


def _num(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros: smaller files, same look."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _svg(width: float, height: float, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_num(width)} {_num(height)}" '
        f'style="max-width:{_num(width)}px" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: float = 12,
    fill: str = MUTED,
    weight: int | None = None,
) -> str:
    bold = f' font-weight="{weight}"' if weight else ""
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{_num(size)}" '
        f'fill="{fill}"{bold}>{escape(text)}</text>'
    )


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis (before escaping, so no entity splits)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- donut -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slice:
    label: str
    value: float
    color: str


def _arc(cx: float, cy: float, r: float, start: float, end: float) -> str:
    """Path of a circle arc from `start` to `end` (fractions of a turn, 0 = 12 o'clock)."""

    def point(turn: float) -> tuple[float, float]:
        angle = 2 * math.pi * turn - math.pi / 2
        return cx + r * math.cos(angle), cy + r * math.sin(angle)

    x0, y0 = point(start)
    x1, y1 = point(end)
    large = 1 if end - start > 0.5 else 0
    return f"M{_num(x0)} {_num(y0)}A{_num(r)} {_num(r)} 0 {large} 1 {_num(x1)} {_num(y1)}"


def donut(
    slices: Sequence[Slice],
    *,
    center_value: str,
    center_label: str,
    label: str,
    size: float = 220,
) -> str:
    """A ring of `slices` proportional to their values, with a figure in the middle."""
    cx = cy = size / 2
    thickness = size * 0.16
    r = size / 2 - thickness / 2 - 2
    total = sum(s.value for s in slices if s.value > 0)
    body = [
        f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(r)}" fill="none" stroke="{GRID}" '
        f'stroke-width="{_num(thickness)}"/>'
    ]
    start = 0.0
    for s in slices:
        if s.value <= 0 or total <= 0:
            continue
        share = s.value / total
        tip = f"<title>{escape(s.label)}</title>"
        stroke = f'fill="none" stroke="{s.color}" stroke-width="{_num(thickness)}"'
        if share >= 0.9999:  # an arc cannot close on itself: draw the whole ring
            body.append(
                f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(r)}" {stroke}>{tip}</circle>'
            )
        else:
            body.append(f'<path d="{_arc(cx, cy, r, start, start + share)}" {stroke}>{tip}</path>')
        start += share
    body.append(
        _text(
            cx, cy + 2, center_value, anchor="middle", size=size * 0.11, fill="#0f172a", weight=650
        )
    )
    body.append(_text(cx, cy + size * 0.11, center_label, anchor="middle", size=size * 0.055))
    return _svg(size, size, label, body)


# --- line chart ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    points: Sequence[tuple[date, float | None]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], about `count` of them (1, 2, 2.5 or 5 steps)."""
    if not high > low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    n = round((last - first) / step)
    return [round(first + i * step, 10) for i in range(n + 1)]


def _spread(ys: list[float], gap: float) -> list[float]:
    """Nudge label positions apart so no two are closer than `gap`, keeping their order."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    for before, after in zip(order, order[1:], strict=False):
        if out[after] - out[before] < gap:
            out[after] = out[before] + gap
    return out


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def _last(points: Sequence[tuple[date, float | None]]) -> tuple[date | None, float | None]:
    """The latest point with a value, or (None, None)."""
    present = [(d, v) for d, v in points if v is not None]
    return max(present, key=lambda p: p[0]) if present else (None, None)


def _date_label(day: date, with_year: bool) -> str:
    return f"{day:%b} {day.day}" + (f" {day.year}" if with_year else "")


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values for a log axis over [low, high] (both > 0): 1, 2 and 5 times powers of ten,
    only the powers themselves when those are too many, the round steps between when the
    range is narrower than two of them."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = [m * 10.0**k for k in range(first, last + 1) for m in (1, 2, 5)]
    below = max((t for t in steps if t <= low), default=steps[0])
    above = min((t for t in steps if t >= high), default=steps[-1])
    ticks = [t for t in steps if below <= t <= above]
    if len(ticks) > 7:
        powers = [10.0**k for k in range(first, last + 1)]
        return [t for t in powers if below <= t <= above] or ticks
    if len(ticks) < 3:
        return [t for t in nice_ticks(low, high) if t > 0]
    return ticks


def line_chart(
    series: Sequence[Series],
    *,
    value_format: Callable[[float], str],
    label: str,
    width: float = 1000,
    height: float = 300,
    tick_format: Callable[[float], str] | None = None,
    end_format: Callable[[Series, float], str] | None = None,
    legend: bool = True,
    log_scale: bool = False,
) -> str:
    """Lines over calendar days sharing one y axis; each line ends in its latest value.

    Days are placed by date, so a missing day shows as a wider step. One day of data draws a
    single labelled point per series in the middle, which reads as a start rather than a bug.
    `end_format` words a line's end label (default: its value); `legend=False` leaves the
    legend to the page (many series wrap better in HTML); `log_scale` spaces values by ratio
    (for amounts that differ by orders of magnitude; values <= 0 are left out).
    """
    tick_format = tick_format or value_format
    end_format = end_format or (lambda _s, v: value_format(v))
    if log_scale:
        series = [Series(s.name, s.color, [(d, _positive(v)) for d, v in s.points]) for s in series]
    days = sorted({d for s in series for d, v in s.points if v is not None})
    values = [v for s in series for _, v in s.points if v is not None]
    ends_text = [end_format(s, v) for s in series for _, v in [_last(s.points)] if v is not None]
    left, top, bottom = 52.0 if not log_scale else 64.0, 30.0 if legend else 12.0, 34.0
    # Room for the end labels (13px bold: up to about 8.5px a character).
    right = max(92.0, 20 + 8.5 * max((len(t) for t in ends_text), default=0))
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    # Legend across the top.
    x = left
    for s in series if legend else ():
        body.append(f'<rect x="{_num(x)}" y="6" width="14" height="4" rx="2" fill="{s.color}"/>')
        body.append(_text(x + 20, 12, s.name, size=13, fill="#0f172a"))
        x += 20 + 8 * len(s.name) + 28
    if not days:
        body.append(_text(width / 2, height / 2, "No data yet", anchor="middle", size=14))
        return _svg(width, height, label, body)

    if log_scale:
        ticks = log_ticks(min(values), max(values))
        y_low = math.log10(min(ticks[0], *values))
        y_high = math.log10(max(ticks[-1], *values))
        if not y_high > y_low:
            y_low, y_high = y_low - 0.5, y_high + 0.5
    else:
        ticks = nice_ticks(min(values), max(values))
        y_low, y_high = ticks[0], ticks[-1]

    def ypos(value: float) -> float:
        scaled = math.log10(value) if log_scale else value
        return top + plot_h * (1 - (scaled - y_low) / (y_high - y_low))

    first, last = days[0], days[-1]
    span = (last - first).days

    def xpos(day: date) -> float:
        return left + plot_w / 2 if span == 0 else left + plot_w * (day - first).days / span

    for tick in ticks:
        y = ypos(tick)
        body.append(
            f'<line x1="{_num(left)}" x2="{_num(left + plot_w)}" y1="{_num(y)}" y2="{_num(y)}" '
            f'stroke="{GRID}"/>'
        )
        body.append(_text(left - 8, y + 4, tick_format(tick), anchor="end"))
    body.append(
        f'<line x1="{_num(left)}" x2="{_num(left + plot_w)}" y1="{_num(top + plot_h)}" '
        f'y2="{_num(top + plot_h)}" stroke="{AXIS}"/>'
    )
    # At most 7 date labels (fewer on a narrow chart), evenly spaced in time, counted back
    # from the latest day.
    with_year = first.year != last.year
    labels = max(2, min(7, int(plot_w // 75)))
    step = max(1, math.ceil(span / (labels - 1)))
    shown = [last - timedelta(days=k * step) for k in range(span // step + 1)]
    for day in shown:
        anchor = "middle"
        if span and day == last:
            anchor = "end"
        elif span and (day - first).days < step / 2:
            anchor = "start"
        body.append(_text(xpos(day), top + plot_h + 22, _date_label(day, with_year), anchor=anchor))

    ends: list[tuple[float, float, str, str]] = []  # x, y, text, colour of each line's end
    dots = len(days) <= 45
    for s in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for day, value in sorted(s.points, key=lambda p: p[0]):
            if value is None:
                runs.append([])
            else:
                runs[-1].append((xpos(day), ypos(value)))
        for run in runs:
            if len(run) > 1:
                d = "M" + "L".join(f"{_num(px)} {_num(py)}" for px, py in run)
                body.append(
                    f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="2.5" '
                    'stroke-linejoin="round" stroke-linecap="round"/>'
                )
        present = [(d, v) for d, v in sorted(s.points, key=lambda p: p[0]) if v is not None]
        for i, (day, value) in enumerate(present):
            if dots or i == len(present) - 1:
                tip = f"{s.name} {_date_label(day, True)}: {value_format(value)}"
                body.append(
                    f'<circle cx="{_num(xpos(day))}" cy="{_num(ypos(value))}" r="4" '
                    f'fill="#fff" stroke="{s.color}" stroke-width="2.5">'
                    f"<title>{escape(tip)}</title></circle>"
                )
        if present:
            day, value = present[-1]
            ends.append((xpos(day), ypos(value), end_format(s, value), s.color))
    label_ys = _spread([y + 4 for _, y, _, _ in ends], 16)
    for (ex, _, text, color), ly in zip(ends, label_ys, strict=True):
        body.append(_text(ex + 10, ly, text, size=13, fill=color, weight=650))
    return _svg(width, height, label, body)


# --- bar list --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    text: str
    color: str
    note: str = ""
    tooltip: str = ""


def bar_list(
    bars: Sequence[Bar],
    *,
    label: str,
    max_value: float | None = None,
    width: float = 520,
    label_width: float = 170,
    row: float = 28,
) -> str:
    """Horizontal bars, one row each: a name, a bar as long as |value|, the value as text."""
    scale = max_value or max((abs(b.value) for b in bars), default=0) or 1.0
    text_w = 130.0
    bar_w = width - label_width - text_w
    height = max(row * len(bars), row)
    body: list[str] = []
    for i, b in enumerate(bars):
        y = i * row
        length = max(bar_w * min(abs(b.value) / scale, 1.0), 2.0)
        tip = f"<title>{escape(b.tooltip or b.label)}</title>"
        body.append(
            f"<g>{tip}"
            + _text(
                0,
                y + row / 2 + 4,
                truncate(b.label, int(label_width // 7)),
                size=13,
                fill="#0f172a",
            )
            + f'<rect x="{_num(label_width)}" y="{_num(y + 6)}" width="{_num(length)}" '
            f'height="{_num(row - 12)}" rx="3" fill="{b.color}"/>'
            + f'<text x="{_num(label_width + length + 6)}" y="{_num(y + row / 2 + 4)}" '
            f'font-size="12"><tspan fill="{b.color}" font-weight="600">{escape(b.text)}</tspan>'
            + (f'<tspan fill="{MUTED}" dx="6">{escape(b.note)}</tspan>' if b.note else "")
            + "</text></g>"
        )
    return _svg(width, height, label, body)
