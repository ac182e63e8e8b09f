"""A CoinGecko v3 client that behaves well on the real API.

One `requests.Session`, connect and read timeouts, a client-side throttle, and retries with
exponential backoff and jitter on what is transient (429, 5xx, timeouts, dropped connections,
bodies that are not JSON), honouring `Retry-After` up to a cap. Key problems fail at once.
The key travels in a header only, so URLs, errors and the lake never contain it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests

from . import __version__
from .errors import ApiError, ApiKeyError
from .settings import Settings
from .throttle import Throttle

# CoinGecko's error codes for a missing, invalid or wrong-plan key (10010/10011: a Pro key on
# the public host or a Demo key on the Pro host; 10002: key missing or invalid).
log = logging.getLogger(__name__)

KEY_ERROR_CODES = frozenset({10002, 10005, 10010, 10011})
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 522, 524})
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0
KEY_FIX = (
    "Check CRYPTOLAKE_API_KEY and CRYPTOLAKE_API_PLAN (demo keys go to api.coingecko.com, "
    "pro keys to pro-api.coingecko.com), or unset CRYPTOLAKE_API_KEY to use the keyless API."
)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One successful response: the body byte for byte plus what is needed to trace it."""

    path: str
    params: dict[str, str]
    url: str  # without the key, which only ever travels in a header
    status: int
    body: bytes
    data: Any
    fetched_at: datetime
    attempts: int
    elapsed_s: float


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


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


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _describe_body(body: bytes) -> str:
    head = body[:200].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"cloudflare" in body[:4096].lower():
        return "an HTML page (likely Cloudflare) instead of JSON"
    if not body:
        return "an empty body"
    return f"a body that is not valid JSON ({len(body)} bytes, truncated?)"


class CoinGeckoClient:
    """GETs JSON from CoinGecko. `sleep`, `clock`, `now` and `rng` are injectable for tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._session.headers.update(
            {"accept": "application/json", "user-agent": f"cryptolake/{__version__}"}
        )
        if settings.api_key:
            self._session.headers[settings.api_key_header] = settings.api_key.reveal()
        self._sleep = sleep
        self._now = now
        self._rng = rng or random.Random()
        self.throttle = Throttle(settings.rate, clock=clock, sleep=sleep)
        self.stats = ClientStats(started_at=clock())
        self._clock = clock

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> CoinGeckoClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def requests_per_minute(self) -> float:
        elapsed = self._clock() - self.stats.started_at
        return 60.0 * self.stats.requests / elapsed if elapsed > 0 else 0.0

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential delay is kept, half is random, so retries from
        # several clients spread out but never collapse to zero wait.
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        validate: Callable[[Any], str | None] | None = None,
    ) -> Fetched:
        """GET `path` (e.g. `/coins/markets`) and return the parsed body.

        `validate` returns a description of what is wrong with the body's shape, or None.
        Raises `ApiKeyError` at once on key problems, `ApiError` on anything else that
        did not succeed within `settings.max_attempts`.
        """
        str_params = {k: str(v) for k, v in (params or {}).items()}
        url = f"{self.settings.api_url}{path}"
        shown_url = f"{url}?{urlencode(str_params)}" if str_params else url
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        last_problem = "no attempt made"
        for attempt in range(1, self.settings.max_attempts + 1):
            self.stats.waited_s += self.throttle.wait()
            started = self._clock()
            fetched_at = self._now()
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                response = self._session.get(url, params=str_params, timeout=timeout)
                body = response.content
            except (
                requests.Timeout,
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # A connection dropped mid-body (fewer bytes than content-length, or a chunked
                # body cut short) raises ChunkedEncodingError, not ConnectionError.
                last_problem = f"{type(exc).__name__}: the connection failed or timed out"
            else:
                status = response.status_code
                retry_after = retry_after_seconds(response.headers.get("retry-after"), self._now())
                try:
                    data = json.loads(body)
                except ValueError:
                    data = None
                    parsed = False
                else:
                    parsed = True
                api_error = error_in_body(data) if parsed else None
                code = api_error[0] if api_error else None
                message = api_error[1] if api_error else None
                if status in (401, 403) or code in KEY_ERROR_CODES:
                    coded = f", code {code}" if code else ""
                    raise ApiKeyError(
                        f"CoinGecko rejected the API key for {path} (HTTP {status}{coded}: "
                        f"{message or 'no message'}). {KEY_FIX}",
                        status=status,
                    )
                if status == 200 and parsed and api_error is None:
                    problem = validate(data) if validate else None
                    if problem is None:
                        return Fetched(
                            path=path,
                            params=str_params,
                            url=shown_url,
                            status=status,
                            body=body,
                            data=data,
                            fetched_at=fetched_at,
                            attempts=attempt,
                            elapsed_s=self._clock() - started,
                        )
                    raise ApiError(
                        f"CoinGecko {path} answered with an unexpected shape: {problem}. "
                        "The API may have changed; nothing was written for this request.",
                        transient=False,
                        status=status,
                    )
                what = f"HTTP {status}"
                if api_error is not None:
                    what += f" with error {code or ''} {message!r}".replace("  ", " ")
                elif not parsed:
                    what += f" with {_describe_body(body)}"
                last_problem = what
                # An error body with HTTP 200 is still an error; its code decides the class.
                effective = code if (status == 200 and code) else status
                transient = effective in TRANSIENT_STATUSES or effective >= 500 or not parsed
                if not transient:
                    raise ApiError(
                        f"CoinGecko {path} failed: {what}. Check the request parameters "
                        f"(--vs-currency, --per-page) and --api-url.",
                        transient=False,
                        status=status,
                    )
            if attempt == self.settings.max_attempts:
                break
            delay = self._backoff(attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.max_retry_after))
            self.stats.retries += 1
            self.stats.waited_s += delay
            log.warning(
                "GET %s attempt %d/%d: %s; retrying in %.1fs",
                path,
                attempt,
                self.settings.max_attempts,
                last_problem,
                delay,
            )
            self._sleep(delay)
        raise ApiError(
            f"CoinGecko {path} failed after {self.settings.max_attempts} attempts; last: "
            f"{last_problem}. The API is rate-limiting or unavailable: try again later, "
            "lower --rate, or set CRYPTOLAKE_API_KEY for a higher limit.",
            transient=True,
        )
