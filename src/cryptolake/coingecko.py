"""A CoinGecko v3 client that behaves well on the real API.

One `requests.Session`, connect and read timeouts, a client-side throttle, and retries with
exponential backoff and jitter on what is transient (429, 5xx, timeouts, dropped connections,
bodies that are not JSON, error bodies the server calls temporary), honouring `Retry-After` up
to a cap; a Cloudflare rate-limit block (error 1015) is waited out for minutes. Key problems
and CDN blocks fail at once. Responses are classified in `api_errors`. The key travels in a
header only, so URLs, errors and the lake never contain it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from . import __version__
from .api_errors import KEY_ERROR_CODES, Verdict, classify
from .api_session import session_for
from .errors import ApiError, ApiKeyError
from .settings import Settings
from .throttle import Throttle

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
# Tries of a host that refuses connections or has no address, a second apart.
UNREACHABLE_ATTEMPTS = 2
BACKOFF_CAP_S = 60.0
# Waits for a Cloudflare rate-limit block (error 1015) to clear: it lasts minutes, not seconds.
CDN_BLOCK_WAITS_S = (60.0, 120.0, 240.0)
UNAVAILABLE_FIX = (
    "The API is rate-limiting or unavailable: try again later, lower --rate, or set "
    "CRYPTOLAKE_API_KEY for a higher limit."
)
RATE_LIMIT_FIX = (
    "The API is rate-limiting this client: lower --rate, run less often, or set "
    "CRYPTOLAKE_API_KEY for a higher limit."
)
SERVER_FIX = (
    "CoinGecko's servers are failing: try again later (status.coingecko.com says when they "
    "are back); nothing was written for this request."
)
NETWORK_FIX = "The connection failed or timed out: check the network, then try again."
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
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case


@dataclass(frozen=True, slots=True)
class BodyProblem:
    """What is wrong with the content of a 200 body. A transient one is retried like a 5xx."""

    description: str
    transient: bool = False
    fix: str | None = None  # what the user can do if retrying does not help


Validator = Callable[[Fetched], BodyProblem | None]


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


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


class CoinGeckoClient:
    """GETs JSON from CoinGecko. `sleep`, `clock`, `now` and `rng` are injectable for tests.

    Every wait beyond the throttle (a backoff, a Retry-After, a CDN block) is logged as a
    warning saying why and for how long, so the CLI shows it.
    """

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
        self._session = session or session_for(settings.api_url)
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

    def _scrub(self, text: str) -> str:
        """`text` (which may quote the server) without the API key: some servers echo it."""
        key = self.settings.api_key.reveal() if self.settings.api_key else ""
        return text.replace(key, "***") if key else text

    def _wait(self, seconds: float, why: str) -> None:
        self.stats.retries += 1
        self.stats.waited_s += seconds
        log.warning("%s; retrying in %.0fs", why, seconds)
        self._sleep(seconds)

    def _refused(self, path: str, verdict: Verdict) -> ApiError:
        """The error for a response retrying cannot mend."""
        if verdict.kind == "blocked":
            return ApiError(
                f"CoinGecko {path} failed: {verdict.what}. The CDN denies this network or "
                "client, whatever the key; try from another network, or ask CoinGecko support "
                "with the Ray ID of a blocked request.",
                transient=False,
            )
        if verdict.kind == "key":
            if self.settings.api_key:
                return ApiKeyError(
                    f"CoinGecko rejected the API key for {path} ({verdict.what}). {KEY_FIX}",
                    status=verdict.status,
                )
            if verdict.code in KEY_ERROR_CODES:
                return ApiKeyError(
                    f"CoinGecko asks for an API key for {path} ({verdict.what}): set "
                    "CRYPTOLAKE_API_KEY (a free Demo key works on api.coingecko.com).",
                    status=verdict.status,
                )
            return ApiError(
                f"CoinGecko refused {path} ({verdict.what}) although no API key was sent; "
                f"check {self.settings.named('api_url')}, or set CRYPTOLAKE_API_KEY if this "
                "endpoint needs a plan.",
                transient=False,
                status=verdict.status,
            )
        named = self.settings.named
        advice = (
            f" Check the request parameters ({named('vs_currency')}, {named('per_page')}) and "
            f"{named('api_url')}."
            if verdict.status in (400, 404, 422)
            else ""
        )
        return ApiError(
            f"CoinGecko {path} failed: {verdict.what}.{advice}",
            transient=False,
            status=verdict.status,
            code=verdict.code,
        )

    def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        validate: Validator | None = None,
    ) -> Fetched:
        """GET `path` (e.g. `/coins/markets`) and return the parsed body.

        `validate` looks at a 200 JSON body and returns what is wrong with it, or None; a
        transient problem (an empty first page, say) is retried like a 5xx. Raises
        `ApiKeyError` at once on key problems, `ApiError` on anything else that did not
        succeed within `settings.max_attempts` (a CDN rate limit is waited out first).
        """
        str_params = {k: str(v) for k, v in (params or {}).items()}
        url = f"{self.settings.api_url}{path}"
        shown_url = f"{url}?{urlencode(str_params)}" if str_params else url
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        last_problem = "no attempt made"
        fix = UNAVAILABLE_FIX
        attempt = 0
        cdn_waits = 0
        unreachable = 0  # attempts the host refused or could not be found
        while attempt < self.settings.max_attempts:
            attempt += 1
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
                reach = unreachable_host(exc)
                if reach is not None:
                    # A host that refuses or does not resolve will not in a minute either:
                    # one quick second try, then say so.
                    unreachable += 1
                    if unreachable >= UNREACHABLE_ATTEMPTS:
                        raise ApiError(
                            f"Cannot reach CoinGecko at {host_of(url)}: {reach}. Check the "
                            f"network and {self.settings.named('api_url')}; offline, "
                            "`cryptolake run --sample` runs everything on recorded data.",
                            transient=True,
                        ) from None
                    log.warning("GET %s: %s; trying once more in 1s", path, reach)
                    self.throttle.refund()  # CoinGecko never saw it: no rate to keep
                    self._sleep(1.0)
                    attempt -= 1
                    continue
                last_problem = f"{type(exc).__name__}: the connection failed or timed out"
                fix = NETWORK_FIX
            else:
                status = response.status_code
                log.info(
                    "GET %s -> %d, %d bytes, %.0f ms",
                    shown_url,
                    status,
                    len(body),
                    1000 * (self._clock() - started),
                )
                retry_after = retry_after_seconds(response.headers.get("retry-after"), self._now())
                try:
                    data = json.loads(body)
                    parsed = True
                except ValueError:
                    data, parsed = None, False
                verdict = classify(status, body, data, parsed=parsed)
                verdict = replace(verdict, what=self._scrub(verdict.what))
                if verdict.kind == "ok":
                    fetched = Fetched(
                        path=path,
                        params=str_params,
                        url=shown_url,
                        status=status,
                        body=body,
                        data=data,
                        fetched_at=fetched_at,
                        attempts=attempt,
                        elapsed_s=self._clock() - started,
                        headers={k.lower(): v for k, v in response.headers.items()},
                    )
                    problem = validate(fetched) if validate else None
                    if problem is None:
                        return fetched
                    if not problem.transient:
                        raise ApiError(
                            f"CoinGecko {path} answered with an unexpected shape: "
                            f"{problem.description}. The API may have changed; nothing was "
                            "written for this request.",
                            transient=False,
                            status=status,
                        )
                    last_problem = f"HTTP 200 with {problem.description}"
                    fix = problem.fix or UNAVAILABLE_FIX
                elif verdict.kind == "cdn_rate_limit":
                    last_problem = verdict.what
                    if cdn_waits == len(CDN_BLOCK_WAITS_S):
                        raise ApiError(
                            f"CoinGecko {path} failed: {verdict.what}, still there after "
                            f"{sum(CDN_BLOCK_WAITS_S) / 60:.0f} min of waiting. Wait before the "
                            "next run, lower --rate, or set CRYPTOLAKE_API_KEY for a higher "
                            "limit.",
                            transient=True,
                            status=status,
                        )
                    # The block lasts minutes whatever the attempt: wait it out without
                    # spending an attempt.
                    attempt -= 1
                    self._wait(
                        CDN_BLOCK_WAITS_S[cdn_waits],
                        f"GET {path}: {verdict.what}, waiting for the block to clear",
                    )
                    cdn_waits += 1
                    continue
                elif verdict.kind == "transient":
                    last_problem = verdict.what
                    fix = (
                        RATE_LIMIT_FIX
                        if status == 429
                        else SERVER_FIX
                        if status >= 500
                        else UNAVAILABLE_FIX
                    )
                else:
                    raise self._refused(path, verdict)
            if attempt == self.settings.max_attempts:
                break
            delay = self._backoff(attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.max_retry_after))
            self._wait(
                delay, f"GET {path} attempt {attempt}/{self.settings.max_attempts}: {last_problem}"
            )
        raise ApiError(
            f"CoinGecko {path} failed after {self.settings.max_attempts} attempts; last: "
            f"{last_problem}. {fix}",
            transient=True,
        )


def host_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def unreachable_host(exc: BaseException) -> str | None:
    """'connection refused' or 'host name not found' when that is why `exc` was raised."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused (nothing listens there)"
        if isinstance(current, socket.gaierror):
            return "host name not found (DNS)"
        text = str(current)
        if "Name or service not known" in text or "Temporary failure in name resolution" in text:
            return "host name not found (DNS)"
        if "Connection refused" in text:
            return "connection refused (nothing listens there)"
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        stack += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
    return None
