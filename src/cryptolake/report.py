"""A one-file HTML report of the gold tables: figures, a top-50 table and inline SVG charts.

The file has no scripts, stylesheets or fonts to fetch, so it opens offline, mails as an
attachment and prints. Everything comes from gold (and the latest silver snapshot for the
movers), read through a read-only connection: writing a report never changes the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from .catalog import open_lake
from .duck import explain_damage, one_line
from .errors import LakeError, TransformError
from .fserrors import cause_of, on_lake
from .lake import atomic_write
from .report_data import Mover, read_report_data
from .report_html import render_html
from .report_parts import Row, coin_name
from .settings import Settings


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where the report went and the headline figures it shows."""

    path: Path
    bytes: int
    snapshot_at: datetime
    vs_currency: str
    coins: int
    top_coin: str
    top_coin_price: float | None
    top_coin_market_cap: float | None
    total_market_cap: float | None
    btc_dominance_pct: float | None
    eth_dominance_pct: float | None
    segment_shares: Mapping[str, float]
    snapshots: int
    days: int
    best_24h: Mover | None
    worst_24h: Mover | None
    # The year section: its first and last day (None without a complete day), and per top
    # coin with enough closes, the drawdown from the year's high (percent, <= 0) and the
    # 30-day volatility (a ratio).
    year_start: date | None = None
    year_end: date | None = None
    drawdown_pct: Mapping[str, float] = field(default_factory=dict)
    volatility_30d: Mapping[str, float] = field(default_factory=dict)


@on_lake("write the report")
def build_report(
    settings: Settings, *, out: Path | None = None, now: datetime | None = None
) -> ReportResult:
    """Write the HTML report of the lake's gold tables to `out` (default `./report.html`, the
    current folder: never into the lake, which may be read-only).

    Raises LakeError when the lake has no gold, or the file cannot be written.
    """
    path = Path(out or "report.html").expanduser()
    now = now or datetime.now(UTC)
    with open_lake(settings, read_only=True) as con:
        try:
            data = read_report_data(con)
        except duckdb.Error as exc:
            advice = explain_damage(exc, "Run `cryptolake transform` to rebuild it.")
            raise TransformError(
                f"Reading gold for the report failed: {one_line(exc).rstrip('.')}. {advice}"
            ) from None
    document = render_html(data, settings=settings, now=now).encode()
    try:
        # Through a symlink to its target; to a device or a pipe (/dev/stdout) as a stream:
        # an atomic rename would replace them with a file.
        if path.exists() and not path.is_file():
            with path.open("wb") as stream:
                stream.write(document)
        else:
            atomic_write(path.resolve() if path.is_symlink() else path, document)
    except OSError as exc:
        raise LakeError(
            f"Cannot write the report to {path}: {cause_of(exc)}. Pass --out with a path you "
            "can write."
        ) from None
    day = data.last_day or {}
    top = data.latest

    def mover(rows: list[Row]) -> Mover | None:
        if not rows:
            return None
        r = rows[0]
        return Mover(
            r["coin_id"], coin_name(r), r["symbol"] or "", r["current_price"], r["change_24h_pct"]
        )

    return ReportResult(
        path=path,
        bytes=len(document),
        snapshot_at=data.snapshot_at,
        vs_currency=data.vs_currency,
        coins=len(data.mart),
        top_coin=coin_name(top),
        top_coin_price=top["current_price"],
        top_coin_market_cap=top["market_cap"],
        total_market_cap=day.get("total_market_cap"),
        btc_dominance_pct=day.get("btc_dominance_pct"),
        eth_dominance_pct=day.get("eth_dominance_pct"),
        segment_shares={
            r["market_cap_category"]: r["tracked_market_cap_share_pct"] for r in data.segments
        },
        snapshots=data.snapshots,
        days=len(data.daily),
        best_24h=mover(data.gainers),
        worst_24h=mover(data.losers),
        year_start=data.year.start,
        year_end=data.year.end,
        drawdown_pct={
            c.coin_id: c.drawdown_pct for c in data.year.coins if c.drawdown_pct is not None
        },
        volatility_30d={
            c.coin_id: c.volatility_30d_ratio
            for c in data.year.coins
            if c.volatility_30d_ratio is not None
        },
    )
