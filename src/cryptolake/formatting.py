"""Numbers and times as people read them: $1.38T, $69,014, $6.5e-9, +5.04%, 3 days 4 h."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

MINUS = "\u2212"  # a real minus sign: as wide as the plus, so signed columns line up

CURRENCY_SYMBOLS = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "cny": "¥",
    "inr": "₹",
    "krw": "₩",
    "btc": "₿",
    "aud": "A$",
    "cad": "C$",
}


def currency_prefix(vs_currency: str) -> str:
    """`$` for usd, `€` for eur, else the upper-case code and a space (`CHF 12.50`)."""
    return CURRENCY_SYMBOLS.get(vs_currency, vs_currency.upper() + " ")


def _signed(text: str, negative: bool) -> str:
    return (MINUS if negative else "") + text


def format_money(value: float | None, vs_currency: str = "usd") -> str:
    """A large amount, compact: $1.38T, $860.12B, $12.50M; below a million in full: $912,345."""
    if value is None or math.isnan(value):
        return "—"
    prefix = currency_prefix(vs_currency)
    size = abs(value)
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if size >= unit:
            return _signed(f"{prefix}{size / unit:,.2f}{suffix}", value < 0)
    return _signed(f"{prefix}{size:,.0f}", value < 0)


def format_price(value: float | None, vs_currency: str = "usd") -> str:
    """A price as people read one: $69,014 · $2,007.86 · $0.9996 · $0.0001234 · $6.5e-9."""
    if value is None or math.isnan(value):
        return "—"
    prefix = currency_prefix(vs_currency)
    size = abs(value)
    if size == 0:
        text = "0"
    elif size >= 10_000:
        text = f"{size:,.0f}"
    elif size >= 1:
        text = f"{size:,.2f}"
    elif size >= 1e-6:
        # Four significant digits, written out: 0.9996, 0.0001234, 0.0000066 (not 0.000006600).
        decimals = 3 - math.floor(math.log10(size))
        text = f"{size:.{decimals}f}"
        if float(text) >= 1:  # 0.99996 rounds up: write it as a price above 1
            text = f"{size:,.2f}"
        else:  # trailing zeros add nothing, but keep cents: 0.50
            whole, fraction = text.split(".")
            text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    else:
        mantissa, exponent = f"{size:.2g}".split("e")
        text = f"{mantissa}e{int(exponent)}"
    return _signed(prefix + text, value < 0)


def format_change(value: float | None, digits: int = 2) -> str:
    """A signed percent change: +5.04%, −3.75%, 0.00%."""
    if value is None or math.isnan(value):
        return "—"
    rounded = round(value, digits)
    if rounded == 0:
        return f"{0:.{digits}f}%"
    return ("+" if rounded > 0 else MINUS) + f"{abs(rounded):,.{digits}f}%"


def format_share(value: float | None) -> str:
    """A share of a whole in percent: 90.97%, <0.01% for a sliver, 0% for nothing."""
    if value is None or math.isnan(value):
        return "—"
    if value == 0:
        return "0%"
    if 0 < value < 0.005:
        return "<0.01%"
    return f"{value:.2f}%"


def format_ratio(value: float | None) -> str:
    """A unitless ratio such as volume over market cap: 0.028."""
    if value is None or math.isnan(value):
        return "—"
    if 0 < value < 0.0005:
        return "<0.001"
    return f"{value:,.3f}"


def format_volatility(value: float | None) -> str:
    """The standard deviation of daily returns (a ratio), as a percent: 2.41%."""
    return "—" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_age(age: timedelta) -> str:
    """How long ago, in the two largest units that matter: 12 min, 5 h 3 min, 3 days 4 h."""
    minutes = max(int(age.total_seconds() // 60), 0)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"
