"""The CoinGecko client against real loopback servers; only sleep, clock and now are fake."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from cryptolake import __version__
from cryptolake.api_errors import error_in_body
from cryptolake.coingecko import BodyProblem, Fetched, retry_after_seconds
from cryptolake.errors import ApiError, ApiKeyError
from cryptolake.secret import Secret
from cryptolake.settings import Settings

from .conftest import GLOBAL, FakeTime, fixture_bytes

KEY = "CG-kq9XtT2vB7w1s8Rz4pLm"
MARKETS = "/api/v3/coins/markets"
PARAMS: dict[str, str | int] = {"vs_currency": "usd", "per_page": 3, "page": 1}
PAGE = fixture_bytes("markets_usd_ids-cosmos-bitcanna-bitcoin_forbole-soljuno_2022-03-21.json")
RATE_LIMITED = fixture_bytes("error_429_rate_limit_nimblehq-jetpack-compose-crypto_2022-09-29.json")
MISSING_PARAM = fixture_bytes(
    "error_422_missing_vs_currency_julianfssen-coingecko_ruby_2021-07-19.json"
)
SERVER_ERROR = fixture_bytes(
    "error_500_ohlc_missing_params_julianfssen-coingecko_ruby_2021-07-19.json"
)
CLOUDFLARE = (
    b"<!DOCTYPE html>\n<html><head><title>api.coingecko.com | 503: Service temporarily "
    b"unavailable</title></head><body><h1>Error 503</h1><p>Cloudflare Ray ID: 8a1b2c3d4e5f6a7b"
    b"</p></body></html>"
)
JSON = "application/json; charset=utf-8"


def expect_list(fetched: Fetched) -> BodyProblem | None:
    if isinstance(fetched.data, list):
        return None
    return BodyProblem(f"expected a JSON array, got {type(fetched.data).__name__}")


@pytest.fixture
def api_settings(httpserver: HTTPServer, lake: Path) -> Settings:
    """Settings pointing at pytest-httpserver, keyless and unthrottled."""
    return Settings.resolve(env={}, lake=lake, api_url=httpserver.url_for("/api/v3"), rate=60_000.0)


def backoff_bounds(attempt: int) -> tuple[float, float]:
    """Equal jitter: half of min(60, 2 * 2**(attempt-1)) is kept, the other half is random."""
    delay = min(60.0, 2.0 * 2 ** (attempt - 1))
    return delay / 2, delay


# --- the key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "header", "other"),
    [
        ("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"),
        ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key"),
    ],
)
def test_key_travels_in_the_plan_header_and_never_in_the_url(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    plan: str,
    header: str,
    other: str,
) -> None:
    httpserver.expect_request(MARKETS, headers={header: KEY}).respond_with_data(
        PAGE, content_type=JSON
    )
    settings = api_settings.with_(api_key=Secret(KEY), api_plan=plan)

    with fake_time.client(settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    assert fetched.body == PAGE
    ((request, response),) = httpserver.log
    assert response.status_code == 200
    assert request.headers[header] == KEY
    assert other not in request.headers
    assert request.headers["user-agent"] == f"cryptolake/{__version__}"
    assert dict(request.args) == {"vs_currency": "usd", "per_page": "3", "page": "1"}
    assert KEY not in request.url
    assert fetched.url == f"{settings.api_url}/coins/markets?vs_currency=usd&per_page=3&page=1"
    assert fetched.params == {"vs_currency": "usd", "per_page": "3", "page": "1"}


def test_keyless_sends_no_key_header(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(PAGE, content_type=JSON)

    with fake_time.client(api_settings) as client:
        client.get("/coins/markets", PARAMS)

    ((request, _),) = httpserver.log
    assert not [name for name in request.headers.keys() if "api-key" in name.lower()]


@pytest.mark.parametrize(
    ("status", "body", "shown"),
    [
        (401, b'{"status":{"error_code":10002,"error_message":"API Key Missing"}}', "HTTP 401"),
        (
            400,
            b'{"status":{"error_code":10010,"error_message":"If you are using Pro API key, please '
            b'change your root URL from api.coingecko.com to pro-api.coingecko.com"}}',
            "HTTP 400, code 10010",
        ),
        (
            400,
            b'{"error_code":10011,"status":{"error_message":"If you are using Demo API key, '
            b'please change your root URL from pro-api.coingecko.com to api.coingecko.com"}}',
            "HTTP 400, code 10011",
        ),
        (403, b"", "HTTP 403"),
    ],
)
def test_a_rejected_key_fails_at_once_naming_the_settings_to_fix(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    status: int,
    body: bytes,
    shown: str,
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(body, status=status, content_type=JSON)
    settings = api_settings.with_(api_key=Secret(KEY))

    with fake_time.client(settings) as client, pytest.raises(ApiKeyError) as raised:
        client.get("/coins/markets", PARAMS)

    message = str(raised.value)
    assert message.startswith(f"CoinGecko rejected the API key for /coins/markets ({shown}")
    assert "CRYPTOLAKE_API_KEY" in message
    assert "CRYPTOLAKE_API_PLAN" in message
    assert KEY not in message
    assert (raised.value.status, raised.value.transient) == (status, False)
    assert len(httpserver.log) == 1
    assert fake_time.sleeps == []


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "waited"),
    [
        ("119", 120.0, 119.0),  # what CoinGecko sent with the recorded 429 body
        ("600", 120.0, 120.0),  # capped by settings.max_retry_after
        ("600", 30.0, 30.0),
    ],
)
def test_429_honours_retry_after_up_to_the_cap(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    retry_after: str,
    max_retry_after: float,
    waited: float,
) -> None:
    httpserver.expect_ordered_request(MARKETS).respond_with_data(
        RATE_LIMITED, status=429, headers={"Retry-After": retry_after}, content_type=JSON
    )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)
    settings = api_settings.with_(max_retry_after=max_retry_after)

    with fake_time.client(settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    httpserver.check_assertions()
    assert fake_time.sleeps == [waited]
    assert (fetched.status, fetched.attempts, fetched.body) == (200, 2, PAGE)
    assert (client.stats.requests, client.stats.retries) == (2, 1)
    assert client.stats.waited_s == waited


def test_retry_after_as_an_http_date(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    when = email.utils.format_datetime(fake_time.start + timedelta(seconds=90), usegmt=True)
    httpserver.expect_ordered_request(MARKETS).respond_with_data(
        RATE_LIMITED, status=429, headers={"Retry-After": when}, content_type=JSON
    )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)

    with fake_time.client(api_settings) as client:
        client.get("/coins/markets", PARAMS)

    assert fake_time.sleeps == [90.0]


def test_a_short_retry_after_does_not_shorten_the_backoff(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_ordered_request(MARKETS).respond_with_data(
        RATE_LIMITED, status=429, headers={"Retry-After": "0"}, content_type=JSON
    )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)

    with fake_time.client(api_settings) as client:
        client.get("/coins/markets", PARAMS)

    (slept,) = fake_time.sleeps
    low, high = backoff_bounds(1)
    assert low <= slept <= high


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, CLOUDFLARE, "text/html; charset=UTF-8"),  # Cloudflare in front of the API
        (200, RATE_LIMITED, JSON),  # an error body with HTTP 200 is still an error
        (500, SERVER_ERROR, JSON),
        (502, b"", JSON),
        (200, PAGE[:700], JSON),  # a body cut short but delivered as complete
    ],
    ids=["cloudflare-503", "error-body-200", "500", "empty-502", "truncated-json-200"],
)
def test_transient_failures_are_retried(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    httpserver.expect_ordered_request(MARKETS).respond_with_data(
        body, status=status, content_type=content_type
    )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)

    with fake_time.client(api_settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    httpserver.check_assertions()
    assert (fetched.attempts, fetched.body) == (2, PAGE)
    assert [r.status_code for _, r in httpserver.log] == [status, 200]
    (slept,) = fake_time.sleeps
    low, high = backoff_bounds(1)
    assert low <= slept <= high


def test_retries_exhausted_raise_a_clear_transient_error(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        CLOUDFLARE, status=503, content_type="text/html"
    )
    settings = api_settings.with_(max_attempts=8)

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS)

    assert str(raised.value) == (
        "CoinGecko /coins/markets failed after 8 attempts; last: HTTP 503 with an HTML page "
        "(likely Cloudflare) instead of JSON. CoinGecko's servers are failing: try again "
        "later (status.coingecko.com says when they are back); nothing was written for this "
        "request."
    )
    assert raised.value.transient is True
    assert len(httpserver.log) == 8
    # One backoff between attempts, none after the last; doubling from 1-2 s, capped at 60 s.
    assert len(fake_time.sleeps) == 7
    for attempt, slept in enumerate(fake_time.sleeps, start=1):
        low, high = backoff_bounds(attempt)
        assert low <= slept <= high, (attempt, slept)
    assert backoff_bounds(7) == (30.0, 60.0)
    assert client.stats.retries == 7


def test_a_bad_request_fails_at_once(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        MISSING_PARAM, status=422, content_type=JSON
    )

    with fake_time.client(api_settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", {"per_page": 3})

    assert str(raised.value) == (
        "CoinGecko /coins/markets failed: HTTP 422 with error 'Missing parameter vs_currency'. "
        "Check the request parameters (--vs-currency, --per-page) and --api-url."
    )
    assert (raised.value.transient, raised.value.status) == (False, 422)
    assert not isinstance(raised.value, ApiKeyError)
    assert len(httpserver.log) == 1
    assert fake_time.sleeps == []


def test_an_unexpected_shape_fails_at_once(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(fixture_bytes(GLOBAL), content_type=JSON)

    with fake_time.client(api_settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS, validate=expect_list)

    assert "unexpected shape: expected a JSON array, got dict" in str(raised.value)
    assert raised.value.transient is False
    assert len(httpserver.log) == 1


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_api_fails_within_seconds_naming_the_host(
    lake: Path, fake_time: FakeTime
) -> None:
    port = closed_port()
    settings = Settings.resolve(
        env={"CRYPTOLAKE_API_KEY": KEY}, lake=lake, api_url=f"http://127.0.0.1:{port}/api/v3"
    )

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/ping")

    assert str(raised.value) == (
        f"Cannot reach CoinGecko at 127.0.0.1:{port}: connection refused (nothing listens "
        "there). Check the network and --api-url; offline, `cryptolake run --sample` runs "
        "everything on recorded data."
    )
    # Two tries a second apart, not a minute of backoff (nor the throttle's 2 s spacing:
    # CoinGecko never saw them); and no word of rate limits or keys.
    assert client.stats.requests == 2
    assert fake_time.sleeps == [1.0]
    assert "rate" not in str(raised.value) and "KEY" not in str(raised.value)


def test_a_host_name_that_does_not_resolve_is_named(lake: Path, fake_time: FakeTime) -> None:
    settings = Settings.resolve(env={}, lake=lake, api_url="http://no-such-host.invalid/api/v3")

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/ping")

    assert str(raised.value).startswith(
        "Cannot reach CoinGecko at no-such-host.invalid:80: host name not found (DNS)."
    )


def test_server_text_never_carries_the_key(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    # A server (or a proxy) that echoes the key back in its error.
    httpserver.expect_request(MARKETS).respond_with_data(
        json.dumps({"error": f"bad request for key {KEY}"}).encode(),
        status=400,
        content_type=JSON,
    )
    settings = api_settings.with_(api_key=Secret(KEY))

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS)

    assert KEY not in str(raised.value)
    assert "bad request for key ***" in str(raised.value)


class RawServer:
    """A loopback HTTP server sending scripted raw bytes, one response per connection."""

    def __init__(self, responses: list[bytes]) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._responses = responses
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/api/v3"

    def _serve(self) -> None:
        for response in self._responses:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed by __exit__
                return
            with conn:
                self.requests.append(conn.recv(65536))
                conn.sendall(response)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._sock.close()
        self._thread.join(timeout=5)


def http_response(body: bytes, *, sent: int | None = None) -> bytes:
    """A 200 announcing all of `body` but carrying only its first `sent` bytes."""
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    return head + body[:sent]


@pytest.fixture
def dropped_then_whole() -> Iterator[RawServer]:
    """First connection drops after 200 body bytes, the second gets the whole body."""
    with RawServer([http_response(PAGE, sent=200), http_response(PAGE)]) as server:
        yield server


def test_a_connection_dropped_mid_body_is_retried(
    dropped_then_whole: RawServer, lake: Path, fake_time: FakeTime
) -> None:
    settings = Settings.resolve(
        env={}, lake=lake, api_url=dropped_then_whole.api_url, rate=60_000.0
    )

    with fake_time.client(settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    assert (fetched.attempts, fetched.body) == (2, PAGE)
    assert len(dropped_then_whole.requests) == 2
    assert len(fake_time.sleeps) == 1


def test_requests_are_spaced_by_the_rate(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(PAGE, content_type=JSON)
    settings = api_settings.with_(rate=60.0)

    with fake_time.client(settings) as client:
        for page in (1, 2, 3):
            client.get("/coins/markets", {**PARAMS, "page": page})

    assert fake_time.sleeps == [1.0, 1.0]
    assert client.stats.waited_s == 2.0
    assert client.requests_per_minute() == 90.0  # 3 requests in 2 fake seconds
    assert [r.args["page"] for r, _ in httpserver.log] == ["1", "2", "3"]


# --- parsing helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            RATE_LIMITED,
            (
                429,
                "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/"
                "pricing to subscribe to our API plans for higher rate limits.",
            ),
        ),
        (MISSING_PARAM, (None, "Missing parameter vs_currency")),
        (SERVER_ERROR, (500, "Internal Server Error")),
        (
            b'{"error_code": 10010, "status": {"error_message": "wrong host"}}',
            (10010, "wrong host"),
        ),
        (
            b'{"error": {"status": {"error_code": 10012, "error_message": "365 days"}}}',
            (10012, "365 days"),
        ),
        (b'{"status": {"error_code": "10011"}}', (10011, "no message")),
        (fixture_bytes(GLOBAL), None),
        (PAGE, None),
        (b'{"gecko_says": "(V3) To the Moon!"}', None),
    ],
)
def test_error_in_body_reads_every_known_shape(
    body: bytes, expected: tuple[int | None, str] | None
) -> None:
    assert error_in_body(json.loads(body)) == expected


NOW = datetime(2026, 2, 15, 15, 47, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("119", 119.0),
        (" 1.5 ", 1.5),
        ("-5", 0.0),
        ("Sun, 15 Feb 2026 15:48:42 GMT", 90.0),
        ("Sun, 15 Feb 2026 15:00:00 GMT", 0.0),  # already past
        ("soon", None),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


# --- what a response means (api_errors) ------------------------------------------------------

# What Cloudflare, in front of the API, sends itself to clients that are not browsers.
CDN_RATE_LIMITED = b"error code: 1015"
CDN_BLOCKED = b"error code: 1020"
# Cloudflare's HTML page for a 1015 block, as api.coingecko.com served it (recorded by
# tellor-io/telliot-feeds); a 1020 page is the same template with its code and heading.
CDN_RATE_LIMITED_HTML = fixture_bytes(
    "error_429_cloudflare_1015_html_tellor-io-telliot-feeds_2022-04-19.html"
)
CDN_BLOCKED_HTML = (
    CDN_RATE_LIMITED_HTML.replace(b"<span>1015</span>", b"<span>1020</span>")
    .replace(b"errorCode:1015", b"errorCode:1020")
    .replace(b"You are being rate limited", b"Access denied")
)


def test_an_error_body_with_200_that_says_try_again_is_retried(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_ordered_request(MARKETS).respond_with_data(
        b'{"error":"Internal error, please try again"}', content_type=JSON
    )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)

    with fake_time.client(api_settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    assert (fetched.attempts, fetched.body) == (2, PAGE)
    assert len(fake_time.sleeps) == 1


def test_an_error_body_with_200_that_is_not_transient_fails_at_once_without_bad_advice(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        b'{"error":"coin not found"}', content_type=JSON
    )

    with fake_time.client(api_settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS)

    assert str(raised.value) == (
        "CoinGecko /coins/markets failed: HTTP 200 with error 'coin not found'."
    )
    assert raised.value.transient is False
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(CDN_RATE_LIMITED, "text/plain"), (CDN_RATE_LIMITED_HTML, "text/html; charset=UTF-8")],
)
def test_a_cdn_rate_limit_is_waited_out_for_minutes(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    body: bytes,
    content_type: str,
) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request(MARKETS).respond_with_data(
            body, status=429, content_type=content_type
        )
    httpserver.expect_ordered_request(MARKETS).respond_with_data(PAGE, content_type=JSON)
    settings = api_settings.with_(max_attempts=1)  # the waits spend no attempt

    with fake_time.client(settings) as client:
        fetched = client.get("/coins/markets", PARAMS, validate=expect_list)

    assert fetched.body == PAGE
    assert fake_time.sleeps == [60.0, 120.0]


def test_a_cdn_rate_limit_that_does_not_clear_is_named(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        CDN_RATE_LIMITED, status=429, content_type="text/plain"
    )

    with fake_time.client(api_settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS)

    assert str(raised.value) == (
        "CoinGecko /coins/markets failed: HTTP 429: rate-limited by CoinGecko's CDN (Cloudflare "
        "error 1015), still there after 7 min of waiting. Wait before the next run, lower "
        "--rate, or set CRYPTOLAKE_API_KEY for a higher limit."
    )
    assert "not valid JSON" not in str(raised.value)
    assert fake_time.sleeps == [60.0, 120.0, 240.0]
    assert len(httpserver.log) == 4
    # Each wait is shown (the CLI prints warnings), with how long it is.
    waits = [r.getMessage() for r in caplog.records if "waiting for the block" in r.getMessage()]
    assert [w.rsplit(" ", 1)[-1] for w in waits] == ["60s", "120s", "240s"]


@pytest.mark.parametrize(
    ("body", "content_type", "label"),
    [
        (CDN_BLOCKED, "text/plain", "Cloudflare error 1020"),
        (CDN_BLOCKED_HTML, "text/html", "Cloudflare error 1020, Ray ID 6fe62dfef8545773"),
        (
            CLOUDFLARE.replace(b"503", b"403"),
            "text/html",
            "an HTML page from Cloudflare, Ray ID 8a1b2c3d4e5f6a7b",
        ),
    ],
)
@pytest.mark.parametrize("keyed", [False, True])
def test_a_cdn_block_is_not_a_key_problem(
    httpserver: HTTPServer,
    api_settings: Settings,
    fake_time: FakeTime,
    body: bytes,
    content_type: str,
    label: str,
    keyed: bool,
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        body, status=403, content_type=content_type
    )
    settings = api_settings.with_(api_key=Secret(KEY)) if keyed else api_settings

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/markets", PARAMS)

    assert not isinstance(raised.value, ApiKeyError)
    assert str(raised.value).startswith(
        f"CoinGecko /coins/markets failed: HTTP 403: access blocked by CoinGecko's CDN ({label})."
    )
    assert "API key" not in str(raised.value) and raised.value.transient is False
    assert len(httpserver.log) == 1


def test_a_key_error_without_a_key_says_a_key_is_needed(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    httpserver.expect_request(MARKETS).respond_with_data(
        b'{"status":{"error_code":10002,"error_message":"API Key Missing"}}',
        status=401,
        content_type=JSON,
    )

    with fake_time.client(api_settings) as client, pytest.raises(ApiKeyError) as raised:
        client.get("/coins/markets", PARAMS)

    assert "rejected" not in str(raised.value)
    assert str(raised.value).startswith(
        "CoinGecko asks for an API key for /coins/markets (HTTP 401, code 10002: API Key "
        "Missing): set CRYPTOLAKE_API_KEY"
    )


def test_a_time_range_error_is_not_a_key_error(
    httpserver: HTTPServer, api_settings: Settings, fake_time: FakeTime
) -> None:
    # Keyless and Demo users asking for more than 365 days of history get this with HTTP 401.
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart").respond_with_data(
        b'{"error":{"status":{"timestamp":"2024-09-04T11:43:57.553+00:00","error_code":10012,'
        b'"error_message":"Your request exceeds the allowed time range."}}}',
        status=401,
        content_type=JSON,
    )
    settings = api_settings.with_(api_key=Secret(KEY))

    with fake_time.client(settings) as client, pytest.raises(ApiError) as raised:
        client.get("/coins/bitcoin/market_chart", {"vs_currency": "usd", "days": 400})

    assert not isinstance(raised.value, ApiKeyError)
    assert "exceeds the allowed time range" in str(raised.value)


def test_proxy_and_ca_bundle_from_the_environment_are_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptolake.api_session import session_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = session_for("https://api.coingecko.com/api/v3")
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.verify == "/etc/ssl/corp.pem" and not session.trust_env
    monkeypatch.setenv("NO_PROXY", "api.coingecko.com")
    assert session_for("https://api.coingecko.com/api/v3").proxies == {}
