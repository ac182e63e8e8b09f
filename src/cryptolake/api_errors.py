"""What a CoinGecko response that is not a usable body means, decided in one place.

Every response is classified once (dlt's way of translating driver errors): a usable body, a
key problem, a block by CoinGecko's CDN, a CDN rate limit, a transient failure worth retrying,
or a terminal one. The client acts on the verdict; nothing else inspects status codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# CoinGecko's error codes for a missing, invalid or wrong-plan key (10010/10011: a Pro key on
# the public host or a Demo key on the Pro host; 10002: key missing or invalid).
KEY_ERROR_CODES = frozenset({10002, 10005, 10010, 10011})
# "Exceeds the allowed time range": sent with HTTP 401 to keyless and Demo users asking for
# more history than their plan allows. Not a key problem.
TIME_RANGE_CODE = 10012
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 522, 524})
# Cloudflare, in front of the API, answers some requests itself: 1015 is its rate limit (the
# IP is blocked for minutes), the others deny access outright (1020: a firewall rule; 1006-
# 1009: the IP or its country is banned; 1010: the client's signature).
CDN_RATE_LIMIT = 1015
CDN_BLOCKS = frozenset({1006, 1007, 1008, 1009, 1010, 1012, 1020})
# `error code: 1015` (text/plain, to API clients) and its HTML pages' `Error</span> <span>1015`,
# `cf-error-code">1020` or `errorCode:1015`; then the Ray ID support asks for.
_CDN_CODE = re.compile(rb"error(?:[\s_:\"'=>-]|code|<[^>]*>)*(10\d\d)\b", re.IGNORECASE)
_RAY_ID = re.compile(rb"Ray ID:?\s*(?:<[^>]*>\s*)*([0-9a-f]{16})\b", re.IGNORECASE)
# How servers phrase a failure that retrying may cure, in an error body sent with HTTP 200.
_TRANSIENT_MESSAGE = re.compile(
    r"try again|temporar|internal (?:server )?error|time(?:d)? ?out|unavailable|overload|busy"
    r"|rate limit|throttl",
    re.IGNORECASE,
)

Kind = Literal["ok", "key", "blocked", "cdn_rate_limit", "transient", "terminal"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The class of one response and a few words saying what it was (for messages and logs)."""

    kind: Kind
    what: str
    status: int
    code: int | None = None


def error_in_body(data: Any) -> tuple[int | None, str] | None:
    """The (code, message) of a CoinGecko error body, in any of its known shapes, else None.

    Shapes seen: {"status": {"error_code", "error_message"}}, {"error": "..."},
    {"error_code": ..., "status": {"error_message": ...}}, {"error": {"status": {...}}},
    and {"status": 500, "error": "..."}.
    """
    if not isinstance(data, dict):
        return None
    code: Any = data.get("error_code")
    message: Any = None
    status = data.get("status")
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("status"), dict):
        status = error["status"]
        error = None
    if isinstance(status, dict):
        code = status.get("error_code", code)
        message = status.get("error_message")
    elif isinstance(status, int) and error is not None:
        code = code or status
    if isinstance(error, str):
        message = error
    if code is None and message is None:
        return None
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return code, str(message) if message is not None else "no message"


def cdn_error_code(body: bytes) -> int | None:
    """Cloudflare's error code in a body it sent itself (`error code: 1015`, `Error 1020`)."""
    head = body[:16384]
    if not head.strip() or head.lstrip()[:1] in (b"{", b"["):
        return None
    match = _CDN_CODE.search(head)
    return int(match[1]) if match else None


def ray_id(body: bytes) -> str | None:
    """The Cloudflare Ray ID of a page Cloudflare sent, which CoinGecko support asks for."""
    match = _RAY_ID.search(body[:16384])
    return match[1].decode() if match else None


def describe_body(body: bytes) -> str:
    """A few words on a body that is not JSON, for messages."""
    head = body[:200].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"cloudflare" in body[:4096].lower():
        return "an HTML page (likely Cloudflare) instead of JSON"
    if not body:
        return "an empty body"
    return f"a body that is not valid JSON ({len(body)} bytes, truncated?)"


def _is_html(body: bytes) -> bool:
    head = body[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"cloudflare" in body[:4096].lower()


def classify(status: int, body: bytes, data: Any, *, parsed: bool) -> Verdict:
    """The verdict on one response: `data` is the parsed body when `parsed` is true."""
    cdn = None if parsed else cdn_error_code(body)
    if cdn == CDN_RATE_LIMIT:
        return Verdict(
            "cdn_rate_limit",
            f"HTTP {status}: rate-limited by CoinGecko's CDN (Cloudflare error 1015)",
            status,
            cdn,
        )
    if cdn in CDN_BLOCKS or (status in (401, 403) and not parsed and _is_html(body)):
        label = f"Cloudflare error {cdn}" if cdn else "an HTML page from Cloudflare"
        if ray := ray_id(body):
            label += f", Ray ID {ray}"
        return Verdict(
            "blocked", f"HTTP {status}: access blocked by CoinGecko's CDN ({label})", status, cdn
        )
    api_error = error_in_body(data) if parsed else None
    code, message = api_error if api_error else (None, None)
    what = f"HTTP {status}"
    if api_error is not None:
        what += f" with error {code or ''} {message!r}".replace("  ", " ")
    elif not parsed:
        what += f" with {describe_body(body)}"
    if code == TIME_RANGE_CODE:
        return Verdict("terminal", what, status, code)
    if code in KEY_ERROR_CODES or status in (401, 403):
        coded = f", code {code}" if code else ""
        return Verdict("key", f"HTTP {status}{coded}: {message or 'no message'}", status, code)
    if status == 200 and parsed and api_error is None:
        return Verdict("ok", what, status)
    if status == 200 and api_error is not None:
        # An error body with HTTP 200 is still an error: its code, or else its words, decide.
        retry = (code is not None and (code in TRANSIENT_STATUSES or code >= 500)) or bool(
            _TRANSIENT_MESSAGE.search(message or "")
        )
        return Verdict("transient" if retry else "terminal", what, status, code)
    if status in TRANSIENT_STATUSES or status >= 500 or not parsed:
        return Verdict("transient", what, status, code)
    return Verdict("terminal", what, status, code)
