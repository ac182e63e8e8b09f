"""The report's HTML: figures, a top-50 table and inline SVG charts, in one document.

No scripts, stylesheets or fonts to fetch: it opens offline, mails as an attachment and
prints. Rendered from `ReportData` (report_data.py); report.py reads the lake and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources

from . import __version__
from .formatting import (
    format_age,
    format_change,
    format_money,
    format_price,
    format_ratio,
    format_share,
    format_timestamp,
    format_volatility,
)
from .lake import LakePaths
from .report_data import ReportData
from .report_parts import (
    Row,
    change_cell,
    coin_label,
    coin_name,
    day_label,
    e,
    responsive,
    span_label,
)
from .report_year_html import year_section
from .settings import Settings
from .svg import Bar, Series, Slice, bar_list, donut, line_chart

SEGMENT_COLORS = {
    "large": "#1e40af",
    "mid": "#3b82f6",
    "small": "#93c5fd",
    "micro": "#f59e0b",
    "unknown": "#cbd5e1",
}
OTHER_SEGMENT_COLOR = "#999999"
UP, DOWN = "#15803d", "#b91c1c"
BTC_COLOR, ETH_COLOR = "#f7931a", "#6366f1"


def _kpis(data: ReportData, now: datetime, settings: Settings) -> str:
    day = data.last_day or {}
    cur = data.vs_currency
    age = now - data.snapshot_at
    stale = age > timedelta(hours=settings.freshness_hours)
    badge = (
        '<span class="badge sample">sample</span>'
        if data.is_sample
        else '<span class="badge stale">stale</span>'
        if stale
        else '<span class="badge fresh">fresh</span>'
    )
    days = len(data.daily)
    cards = [
        (
            "Total market cap",
            format_money(day.get("total_market_cap"), cur),
            f"24h volume {format_money(day.get('total_volume'), cur)}",
        ),
        (
            "BTC dominance",
            format_share(day.get("btc_dominance_pct")),
            f"ETH {format_share(day.get('eth_dominance_pct'))}",
        ),
        (
            "Up / down, 24h",
            f"{day.get('advancing_coins') or 0:,} / {day.get('declining_coins') or 0:,}",
            f"coins up / down of {day.get('coins_tracked') or 0:,} tracked",
        ),
        (
            "Latest snapshot",
            f"sample data from {data.recorded_at:%Y-%m-%d}"
            if data.is_sample
            else f"{format_age(age)} ago",
            f"{data.snapshots:,} snapshot{'s' if data.snapshots != 1 else ''} · "
            f"{days:,} day{'s' if days != 1 else ''}"
            + (" · recorded prices bundled with cryptolake" if data.is_sample else ""),
        ),
    ]
    html = []
    for i, (label, value, sub) in enumerate(cards):
        extra = f" {badge}" if i == len(cards) - 1 else ""
        html.append(
            f'<div class="kpi"><div class="label">{e(label)}{extra}</div>'
            f'<div class="value">{e(value)}</div><div class="sub">{e(sub)}</div></div>'
        )
    return '<section class="kpis">' + "".join(html) + "</section>"


def _dominance(data: ReportData) -> str:
    def points(column: str) -> list[tuple[date, float | None]]:
        return [(r["day"], r[column]) for r in data.daily]

    series = [
        Series("BTC", BTC_COLOR, points("btc_dominance_pct")),
        Series("ETH", ETH_COLOR, points("eth_dominance_pct")),
    ]

    def chart(width: float, height: float) -> str:
        return line_chart(
            series,
            value_format=format_share,
            tick_format=lambda v: f"{v:g}%",
            label="BTC and ETH dominance: share of total market cap by day",
            width=width,
            height=height,
        )

    days = len(data.daily)
    if days == 1:
        note = "One day of history so far: each daily run adds a point."
    else:
        first, last = data.daily[0]["day"], data.daily[-1]["day"]
        note = f"{days} days, {span_label(first, last)}; each day's last snapshot."
    return (
        '<section class="card"><h2>Bitcoin and Ether dominance</h2>'
        f'<p class="note">Share of the total crypto market cap. {e(note)}</p>'
        f"{responsive(chart(1000, 300), chart(360, 240))}</section>"
    )


def _usd_bound(value: float) -> str:
    return format_money(value, "usd").replace(".00", "")


def segment_bounds(min_usd: float | None, max_usd: float | None) -> str:
    """A segment's bounds in USD as the report shows them: `$1B – $10B`, `≥ $10B`."""
    if min_usd is None:
        return "no market cap"
    if max_usd is None:
        return f"≥ {_usd_bound(min_usd)}"
    if min_usd <= 0:
        return f"< {_usd_bound(max_usd)}"
    return f"{_usd_bound(min_usd)} – {_usd_bound(max_usd)}"


def _segments(data: ReportData) -> str:
    cur = data.vs_currency

    def color(row: Row) -> str:
        return SEGMENT_COLORS.get(str(row["market_cap_category"]), OTHER_SEGMENT_COLOR)

    total = sum(r["total_market_cap"] or 0 for r in data.segments)
    slices = [
        Slice(
            f"{r['label']}: {format_share(r['tracked_market_cap_share_pct'])}",
            r["total_market_cap"] or 0,
            color(r),
        )
        for r in data.segments
    ]
    chart = donut(
        slices,
        center_value=format_money(total, cur),
        center_label="tracked market cap",
        label="Market cap by segment",
    )
    rows = []
    for r in data.segments:
        rows.append(
            "<tr>"
            f'<td class="l"><span class="swatch" style="background:{color(r)}"></span>'
            f'{e(r["label"])}<div class="range">'
            f"{e(segment_bounds(r['min_market_cap_usd'], r['max_market_cap_usd']))}</div></td>"
            f'<td class="num">{r["coin_count"]:,}</td>'
            f'<td class="num">{e(format_money(r["total_market_cap"], cur))}</td>'
            f'<td class="num strong">{e(format_share(r["tracked_market_cap_share_pct"]))}</td>'
            + change_cell(r["median_price_change_24h_pct"], "opt")
            + "</tr>"
        )
    table = (
        '<table class="compact"><thead><tr><th class="l">Segment</th><th>Coins</th>'
        '<th>Market cap</th><th>Share</th><th class="opt">Median 24h</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )
    return (
        '<section class="card"><h2>Market cap by segment</h2>'
        f'<p class="note">All {data.tracked_coins:,} coins of the latest snapshot, by market cap '
        "in USD (converted at the snapshot's own rate); shares are of these coins' total, not "
        "of the whole market.</p>"
        f'<div class="donut-row"><div class="donut">{chart}</div>{table}</div></section>'
    )


def _movers_section(data: ReportData) -> str:
    cur = data.vs_currency
    everyone = data.gainers + data.losers
    scale = max((abs(r["change_24h_pct"]) for r in everyone), default=1.0)

    def bars(rows: Sequence[Row]) -> str:
        items = [
            Bar(
                label=coin_name(r),
                value=r["change_24h_pct"],
                text=format_change(r["change_24h_pct"]),
                color=UP if r["change_24h_pct"] >= 0 else DOWN,
                note=format_price(r["current_price"], cur),
                tooltip=f"{coin_name(r)} ({str(r['symbol'] or '').upper()}) "
                f"{format_price(r['current_price'], cur)}, {format_change(r['change_24h_pct'])}",
            )
            for r in rows
        ]
        label = "24h price change"
        return responsive(
            bar_list(items, max_value=scale, label=label),
            bar_list(items, max_value=scale, label=label, width=360, label_width=112),
        )

    return (
        '<section class="card"><h2>Top movers, 24h</h2>'
        f'<p class="note">Among the {data.tracked_coins:,} coins of the latest snapshot.</p>'
        f"<h3>Best</h3>{bars(data.gainers)}<h3>Worst</h3>{bars(data.losers)}</section>"
    )


def _top_table(data: ReportData) -> str:
    cur = data.vs_currency
    rows = []
    for r in data.mart:
        segment = str(r["market_cap_category"])
        rows.append(
            "<tr>"
            f'<td class="num rank">{r["market_cap_rank"]}</td>'
            f'<td class="l coin">{coin_label(coin_name(r), str(r["symbol"] or ""))}</td>'
            f'<td class="num strong">{e(format_price(r["current_price"], cur))}</td>'
            f'<td class="num">{e(format_money(r["market_cap"], cur))}</td>'
            + change_cell(r["price_change_24h_pct"])
            + change_cell(r["price_change_7d_pct"])
            + f'<td class="l"><span class="pill {e(segment)}">{e(segment)}</span></td>'
            f'<td class="num">{e(format_ratio(r["volume_to_market_cap_ratio"]))}</td>'
            f'<td class="num">{e(format_volatility(r["volatility_7d_ratio"]))}</td>'
            "</tr>"
        )
    return (
        f"<section><h2>Top {len(data.mart)} by market cap</h2>"
        '<p class="note">Volume/MCap is 24h volume over market cap; volatility is the standard '
        "deviation of the last 7 daily returns (shown once 7 days exist).</p>"
        '<div class="table-wrap"><table class="top"><thead><tr>'
        '<th>#</th><th class="l">Coin</th><th>Price</th><th>Market cap</th><th>24h</th>'
        '<th>7d</th><th class="l">Segment</th><th>Vol/MCap</th><th>Volatility 7d</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div></section>"
    )


def _categories(data: ReportData) -> str:
    if not data.categories:
        return ""
    top = max((r["market_cap_usd"] or 0 for r in data.categories), default=0) or 1
    rows = []
    for r in data.categories:
        width = 100 * (r["market_cap_usd"] or 0) / top
        rows.append(
            "<tr>"
            f'<td class="num rank">{r["category_rank"]}</td>'
            f'<td class="l">{e(r["name"])}</td>'
            f'<td class="num">{e(format_money(r["market_cap_usd"], "usd"))}</td>'
            f'<td class="barcell"><span class="bar" style="width:{width:.1f}%"></span></td>'
            + change_cell(r["market_cap_change_24h_pct"])
            + f'<td class="num">{e(format_money(r["volume_24h_usd"], "usd"))}</td>'
            "</tr>"
        )
    return (
        f"<section><h2>Top {len(data.categories)} categories</h2>"
        '<p class="note">CoinGecko categories by market cap (USD); a coin can be in several.</p>'
        '<div class="table-wrap"><table class="cats"><thead><tr><th>#</th>'
        '<th class="l">Category</th><th>Market cap</th><th class="barcell"></th>'
        "<th>24h</th><th>24h volume</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div></section>"
    )


def _freshness(data: ReportData, now: datetime, settings: Settings) -> str:
    items = [
        ("Latest snapshot", format_timestamp(data.snapshot_at)),
        ("Age at report time", format_age(now - data.snapshot_at)),
        ("First snapshot", format_timestamp(data.first_snapshot_at)),
        ("Snapshots in the lake", f"{data.snapshots:,}"),
        ("Days in gold.market_daily", f"{len(data.daily):,}"),
        ("Report generated", format_timestamp(now)),
        ("Lake catalog", settings.catalog_redacted),
    ]
    cells = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    return f'<section><h2>Data freshness</h2><dl class="facts">{cells}</dl></section>'


# The stylesheet lives next to this module as a plain .css file, inlined into every report.
CSS = (resources.files("cryptolake") / "report.css").read_text(encoding="utf-8")


def render_html(data: ReportData, *, settings: Settings, now: datetime) -> str:
    """The whole report as one HTML document."""
    snapshot = data.snapshot_at.astimezone(UTC)
    title = f"Crypto market report, {day_label(snapshot)}, {snapshot.year}"
    subtitle = (
        (
            f"Sample data recorded {format_timestamp(data.recorded_at)} (not live prices) · "
            if data.is_sample
            else ""
        )
        + f"Snapshot {format_timestamp(data.snapshot_at)} · prices in "
        f"{data.vs_currency.upper()} · top {len(data.mart)} of {data.tracked_coins:,} tracked "
        f"coins · generated {format_timestamp(now)}"
    )
    lake = LakePaths.of(settings)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light">'
        f'<meta name="generator" content="cryptolake {e(__version__)}">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>"
        '<header><div class="eyebrow">cryptolake · market report</div>'
        f'<h1>{e(title)}</h1><p class="sub">{e(subtitle)}</p></header>'
        + _kpis(data, now, settings)
        + f'<div class="grid">{_dominance(data)}</div>'
        + year_section(data.year, currency=data.vs_currency, is_sample=data.is_sample)
        + f'<div class="grid">{_segments(data)}{_movers_section(data)}</div>'
        + _top_table(data)
        + _categories(data)
        + _freshness(data, now, settings)
        + f"<footer>Built by cryptolake {e(__version__)} from the gold tables of the lake at "
        f"{e(lake.root)}. Figures are as CoinGecko reported them at snapshot time.</footer>"
        "</main></body></html>\n"
    )
