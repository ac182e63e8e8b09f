"""Query results as text for `cryptolake query`: JSON documents, CSV and table rows.

Every value keeps its meaning in JSON: timestamps in ISO 8601 (with `T`), JSON columns nested
rather than quoted, maps as objects, intervals as ISO 8601 durations, decimals as numbers,
blobs as `\\x..` hex as DuckDB shows them, and NaN or infinities (which JSON cannot hold) as
null. CSV cannot hold nested values at all, so lists, structs and maps go into it as JSON
text.
"""

from __future__ import annotations

import io
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from ..lakedb import JSON_METADATA


def plain(value: Any, kind: pa.DataType | None = None) -> Any:
    """`value` (from Arrow's to_pylist) as a JSON-ready Python value."""
    if value is None:
        return None
    if kind is not None and pa.types.is_map(kind):
        return {str(k): plain(v, kind.item_type) for k, v in value}
    if isinstance(value, dict):
        fields = {f.name: f.type for f in kind} if kind is not None else {}
        return {k: plain(v, fields.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        item = getattr(kind, "value_type", None)
        return [plain(v, item) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return "".join(f"\\x{b:02x}" for b in value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, pa.MonthDayNano):  # an interval, as an ISO 8601 duration
        return f"P{value.months}M{value.days}DT{value.nanoseconds / 1e9:g}S"
    if isinstance(value, timedelta):
        return f"PT{value.total_seconds():g}S"
    return value


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as DuckDB does in a subquery: a, a -> a, a_1."""
    seen: set[str] = set()
    out = []
    for name in names:
        while name in seen:
            name = f"{name}_1"
        seen.add(name)
        out.append(name)
    return out


def json_rows(result: pa.Table) -> list[dict[str, Any]]:
    """The rows as JSON objects (see the module's docstring for how values are written)."""
    columns = []
    for field, column in zip(result.schema, result.columns, strict=True):
        if (field.metadata or {}).get(JSON_METADATA):
            values = [None if v is None else json.loads(v) for v in column.to_pylist()]
        else:
            values = [plain(v, field.type) for v in column.to_pylist()]
        columns.append(values)
    names = unique_names(result.column_names)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def json_text(result: pa.Table) -> str:
    return json.dumps(json_rows(result), indent=2, allow_nan=False) + "\n"


def csv_text(result: pa.Table) -> str:
    """The rows as CSV with a header; nested values as JSON text."""
    columns = []
    for field, column in zip(result.schema, result.columns, strict=True):
        if pa.types.is_nested(field.type):
            texts = [
                None if v is None else json.dumps(plain(v, field.type), allow_nan=False)
                for v in column.to_pylist()
            ]
            columns.append(pa.array(texts, pa.string()))
        else:
            columns.append(column)
    buffer = io.BytesIO()
    pa_csv.write_csv(pa.table(columns, names=unique_names(result.column_names)), buffer)
    text = buffer.getvalue().decode()
    return text if text.endswith("\n") else text + "\n"


def table_rows(result: pa.Table) -> list[list[Any]]:
    """The rows as lists, column by column (two columns may share a name)."""
    return [list(row) for row in zip(*(c.to_pylist() for c in result.columns), strict=True)]
