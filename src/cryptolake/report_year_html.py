"""The report's year section: the top 10 coins' last 365 days, as charts and two tables.

Rendered from `YearData` (report_year.py). Sparse data is said, never drawn over: a coin
with one close is a point and a sentence, a coin with none is named, and a year that ends
long before the latest snapshot (a sample lake, a lake whose runs stopped) says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date

from .formatting import MINUS, currency_prefix, format_money, format_price, format_volatility
from .report_parts import change_cell, coin_label, day_label, e, responsive, span_label
from .report_year import VOLATILITY_DAYS, YEAR_DAYS, CoinYear, YearData
from .svg import Series, line_chart

# One colour per position in the top 10 (bitcoin's and ether's as in the dominance chart
# when they lead, as they usually do).
PALETTE = (
    "#f7931a",
    "#6366f1",
    "#059669",
    "#0ea5e9",
    "#eab308",
    "#db2777",
    "#7c3aed",
    "#64748b",
    "#dc2626",
    "#14b8a6",
)


def _prose(text: str) -> str:
    """A sentence, escaped, with `commands` set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", e(text))


def _color(coin: CoinYear) -> str:
    return PALETTE[(coin.position - 1) % len(PALETTE)]


def _short_money(value: float, currency: str) -> str:
    """An amount in about three significant digits, for axes and line ends: $15.1B, $997M."""
    size = abs(value)
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if size >= unit:
            n = size / unit
            text = f"{n:.{2 if n < 10 else 1 if n < 100 else 0}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return f"{MINUS if value < 0 else ''}{currency_prefix(currency)}{text}{suffix}"
    return format_money(value, currency)


def _dated(day: date) -> str:
    return f"{day_label(day)}, {day.year}"


def _names(coins: Sequence[CoinYear]) -> str:
    return ", ".join(c.name for c in coins)


def _legend(coins: Sequence[CoinYear]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{_color(c)}"></span>'
        f"{coin_label(c.name, c.symbol)}</li>"
        for c in coins
    )
    return f'<ul class="legend">{items}</ul>'


def _chart(
    coins: Sequence[CoinYear],
    points: Callable[[CoinYear], Sequence[tuple[date, float | None]]],
    *,
    value_format: Callable[[float], str],
    tick_format: Callable[[float], str],
    label: str,
    log_scale: bool = False,
) -> str:
    series = [Series(c.name, _color(c), points(c)) for c in coins]
    symbols = {c.name: c.symbol.upper() or c.name for c in coins}

    def draw(width: float, height: float) -> str:
        return line_chart(
            series,
            value_format=value_format,
            tick_format=tick_format,
            end_format=lambda s, v: f"{symbols[s.name]} {tick_format(v)}",
            label=label,
            width=width,
            height=height,
            legend=False,
            log_scale=log_scale,
        )

    return _legend(coins) + responsive(draw(1000, 340), draw(360, 280))


def _notes(year: YearData, *, is_sample: bool) -> list[str]:
    """What a reader must know to read the charts right, as sentences."""
    assert year.end is not None and year.latest_day is not None
    charted = year.charted
    first = min(c.first_day for c in charted if c.first_day)
    notes = [
        f"Closes of complete UTC days, {span_label(first, year.end)}: the last {YEAR_DAYS} "
        f"days up to the lake's last complete day (a day's close is the price at 00:00 UTC "
        "of the next day). Each price line starts at 100 on the coin's first close, so the "
        "coins compare; market caps are on a log scale."
    ]
    if year.latest_day > year.end:
        gap = (year.latest_day - year.end).days
        if gap > 1:
            notes.append(
                f"The year ends {gap:,} days before the lake's latest day, "
                f"{_dated(year.latest_day)}: no later day is complete."
            )
        else:
            notes.append(f"{_dated(year.latest_day)} is not over yet: its prices are not closes.")
    if is_sample:
        notes.append(
            "Sample data: prices recorded from CoinGecko and bundled with cryptolake (history "
            "from the day it was recorded), not live ones."
        )
    late = [c for c in charted if c.first_day and c.first_day > first]
    for coin in late[:5]:
        notes.append(f"{coin.name} starts on {_dated(coin.first_day or first)}: 100 there.")
    single = [c for c in charted if c.days == 1]
    if single:
        notes.append(f"One close only for {_names(single)}: a point, not a line.")
    missing = [c for c in year.coins if not c.closes]
    if missing:
        notes.append(
            f"No close in the year for {_names(missing)}: `cryptolake backfill` fetches "
            "a year of their history."
        )
    return notes


def _drawdowns(year: YearData, currency: str) -> str:
    rows = []
    for c in year.charted:
        high = (
            f"{e(format_price(c.high_close, currency))}"
            f'<div class="range">{e(_dated(c.high_day))}</div>'
            if c.high_day and c.days > 1
            else "—"
        )
        rows.append(
            "<tr>"
            f'<td class="num rank">{c.position}</td>'
            f'<td class="l coin">{coin_label(c.name, c.symbol)}</td>'
            f'<td class="num strong">{e(format_price(c.latest_close, currency))}</td>'
            f'<td class="num">{high}</td>'
            + change_cell(c.drawdown_pct)
            + f'<td class="num">{c.days:,}</td></tr>'
        )
    return (
        "<div><h3>Drawdown from the year's high</h3>"
        '<div class="table-wrap"><table class="compact"><thead><tr><th>#</th>'
        '<th class="l">Coin</th><th>Latest close</th><th>Year\'s high</th><th>Drawdown</th>'
        "<th>Days</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
        '<p class="note">The latest close over the highest close of the year, minus 1; none '
        "from a single close.</p></div>"
    )


def _volatility(year: YearData) -> str:
    ranked = sorted(
        (c for c in year.charted if c.volatility_30d_ratio is not None),
        key=lambda c: (-(c.volatility_30d_ratio or 0.0), c.position),
    )
    rows = [
        "<tr>"
        f'<td class="num rank">{i}</td>'
        f'<td class="l coin">{coin_label(c.name, c.symbol)}</td>'
        f'<td class="num strong">{e(format_volatility(c.volatility_30d_ratio))}</td>'
        f'<td class="num">{e(_dated(c.last_day)) if c.last_day else "—"}</td></tr>'
        for i, c in enumerate(ranked, start=1)
    ]
    unranked = [c for c in year.charted if c.volatility_30d_ratio is None]
    table = (
        '<div class="table-wrap"><table class="compact"><thead><tr><th>#</th>'
        '<th class="l">Coin</th><th>Volatility 30d</th><th>As of</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
        if rows
        else ""
    )
    why = (
        f" Not enough history yet for {_names(unranked)}: it takes {VOLATILITY_DAYS} daily "
        "returns, each between two consecutive complete days."
        if unranked
        else ""
    )
    return (
        "<div><h3>30-day volatility, highest first</h3>"
        + table
        + f'<p class="note">The standard deviation of the last {VOLATILITY_DAYS} daily '
        f"returns, on each coin's last day in the year.{_prose(why)}</p></div>"
    )


def year_section(year: YearData, *, currency: str, is_sample: bool) -> str:
    """The year section, or a short card saying why there is none yet."""
    title = f"The last {YEAR_DAYS} days: top {len(year.coins) or 10} coins"
    badge = ' <span class="badge sample">sample</span>' if is_sample else ""
    if year.end is None or not year.charted:
        return (
            f'<section class="card"><h2>{e(title)}{badge}</h2><p class="note">'
            + _prose(
                "No complete day yet for the top coins: a day is complete once the lake "
                "holds a snapshot of the next day, or its history (`cryptolake backfill`). "
                "Prices, drawdowns and volatility over the year appear then."
            )
            + "</p></section>"
        )
    notes = "".join(f'<p class="note">{_prose(n)}</p>' for n in _notes(year, is_sample=is_sample))
    charted = year.charted
    prices = _chart(
        charted,
        lambda c: c.indexed,
        value_format=lambda v: f"{v:.1f}",
        tick_format=lambda v: f"{v:,.0f}",
        label=f"Price of the top coins, indexed to 100 at each one's first close in the "
        f"last {YEAR_DAYS} days",
    )
    caps = _chart(
        charted,
        lambda c: c.market_caps,
        value_format=lambda v: format_money(v, currency),
        tick_format=lambda v: _short_money(v, currency),
        label=f"Market cap of the top coins over the last {YEAR_DAYS} days (log scale)",
        log_scale=True,
    )
    return (
        f'<section class="card year"><h2>{e(title)}{badge}</h2>{notes}'
        f"<h3>Price, indexed to 100</h3>{prices}"
        f"<h3>Market cap ({e(currency.upper())})</h3>{caps}"
        f'<div class="grid tables">{_drawdowns(year, currency)}{_volatility(year)}</div>'
        "</section>"
    )
