"""Pieces of HTML every section of the report uses: escaping, coin labels, dates, cells.

Kept apart so each section's module (report_html.py, report_year_html.py) imports them
without importing the other.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape
from typing import Any

from .formatting import format_change

Row = dict[str, Any]


def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def coin_name(row: Row) -> str:
    """A coin's display name; its id where the API gave no name."""
    return str(row["name"] or row["coin_id"])


def coin_label(name: str, symbol: str) -> str:
    """A coin's name with its ticker beside it, escaped."""
    return f'{e(name)} <span class="sym">{e(symbol.upper())}</span>'


def day_label(day: date) -> str:
    """`Feb 6`: a day in the year the sentence around it names."""
    return f"{day:%b} {day.day}"


def span_label(first: date, last: date) -> str:
    """`Feb 6 to Feb 15, 2026`, or `Dec 20, 2025 to Jan 3, 2026` across a new year."""
    since = day_label(first) + (f", {first.year}" if first.year != last.year else "")
    return f"{since} to {day_label(last)}, {last.year}"


def responsive(wide: str, narrow: str) -> str:
    """Both drawings of a chart; CSS shows the narrow one on small screens (text stays legible)."""
    return f'<div class="wide">{wide}</div><div class="narrow">{narrow}</div>'


def change_cell(value: float | None, extra: str = "") -> str:
    """A table cell with a signed percent, green when up, red when down."""
    sign = 0 if value is None or math.isnan(value) else round(value, 2)
    cls = " ".join(c for c in ("num", "up" if sign > 0 else "down" if sign < 0 else "", extra) if c)
    return f'<td class="{cls}">{e(format_change(value))}</td>'
