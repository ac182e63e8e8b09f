"""A loopback HTTP server that replays recorded CoinGecko responses.

`--sample` runs ingestion against it, so the sample goes through exactly the code path of a
live run (HTTP, throttle, retries, bronze). Tests and demos use it the same way.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .datasets import (
    COINS_CATEGORIES,
    COINS_MARKETS,
    GLOBAL,
    HISTORY_DATASETS,
    KEYLESS_HISTORY_DAYS,
)

API_PREFIX = "/api/v3"
# CoinGecko's answers for an unknown coin and for history beyond the keyless plan's 365 days
# (HTTP 404 and HTTP 401, shapes as recorded from the live API).
COIN_NOT_FOUND = b'{"error":"coin not found"}'


def beyond_time_range_body(now: datetime) -> bytes:
    """The 401 body of error 10012 (history older than the plan allows)."""
    stamp = now.astimezone(UTC).isoformat(timespec="milliseconds")
    return json.dumps(
        {
            "error": {
                "status": {
                    "timestamp": stamp,
                    "error_code": 10012,
                    "error_message": "Your request exceeds the allowed time range. Public API "
                    "users are limited to querying historical data within the past 365 days. "
                    "Upgrade to a paid plan to enjoy full historical data access: "
                    "https://www.coingecko.com/en/api/pricing. ",
                }
            }
        },
        separators=(",", ":"),
    ).encode()


def _route(endpoint: str) -> re.Pattern[str]:
    """A declared endpoint as a pattern: `/coins/{coin_id}/ohlc` matches `/coins/x/ohlc`."""
    return re.compile("^" + re.escape(endpoint).replace(r"\{coin_id\}", "(?P<coin_id>[^/]+)") + "$")


_ROUTES = [(d, _route(d.endpoint)) for d in HISTORY_DATASETS]


@dataclass
class ReplayData:
    """Bodies to serve. `markets` is sliced into pages; `bodies` maps other paths to bytes."""

    markets: bytes
    bodies: Mapping[str, bytes] = field(default_factory=dict)
    vs_currency: str = "usd"
    # Per-coin datasets: dataset name -> coin id -> body. A coin without a body gets the
    # API's 404 `coin not found`; `days` beyond `max_days` gets its 401 (error 10012).
    coin_bodies: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    max_days: int = KEYLESS_HISTORY_DAYS

    def markets_page(self, per_page: int, page: int) -> bytes:
        # The recorded page itself when asked for it, byte for byte; other pages are slices of
        # it, re-serialised (json keeps every number's value).
        records: list[Any] = json.loads(self.markets)
        if page == 1 and per_page >= len(records):
            return self.markets
        start = (page - 1) * per_page
        return json.dumps(records[start : start + per_page]).encode()

    def markets_listed(self) -> int:
        """How many coins the replay lists, as CoinGecko's `total` header says of the API."""
        return len(json.loads(self.markets))


def sample_data() -> ReplayData:
    """The recorded responses shipped in the package (see sample/ATTRIBUTION.md)."""
    pkg = resources.files("cryptolake") / "sample"
    chart = "market_chart_bitcoin_usd_days30_julianfssen-coingecko_ruby_2021-05-15.json"
    ohlc = "ohlc_bitcoin_usd_days7_julianfssen-coingecko_ruby_2021-05-15.json"
    return ReplayData(
        coin_bodies={
            "coin_market_chart": {"bitcoin": (pkg / chart).read_bytes()},
            "coin_ohlc": {"bitcoin": (pkg / ohlc).read_bytes()},
        },
        markets=(pkg / "markets_usd_JKorf-CoinGecko.Net_2023-01-08.json").read_bytes(),
        bodies={
            GLOBAL.endpoint: (pkg / "global_JKorf-CoinGecko.Net_2023-01-08.json").read_bytes(),
            COINS_CATEGORIES.endpoint: (
                pkg / "categories_JKorf-CoinGecko.Net_2023-01-08.json"
            ).read_bytes(),
            "/ping": b'{"gecko_says":"(V3) To the Moon!"}',
        },
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log."""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        data = self.server.data
        self.server.requests.append(self.path)
        self.server.arrivals.append(time.monotonic())
        if not parts.path.startswith(API_PREFIX):
            self._send(404, b'{"error":"Not Found"}')
            return
        path = parts.path[len(API_PREFIX) :]
        if path == COINS_MARKETS.endpoint:
            if "vs_currency" not in query:
                self._send(422, b'{"error":"Missing parameter vs_currency"}')
                return
            if query["vs_currency"] != data.vs_currency:
                self._send(
                    422,
                    json.dumps(
                        {"error": f"replay holds vs_currency={data.vs_currency} only"}
                    ).encode(),
                )
                return
            per_page = int(query.get("per_page", "100"))
            page = int(query.get("page", "1"))
            # CoinGecko says how long the list is in these headers; so does the replay.
            listing = {"total": str(data.markets_listed()), "per-page": str(per_page)}
            self._send(200, data.markets_page(per_page, page), listing)
        elif path in data.bodies:
            self._send(200, data.bodies[path])
        else:
            for declared, pattern in _ROUTES:
                if match := pattern.match(path):
                    self._coin(declared.name, match["coin_id"], query)
                    return
            self._send(404, b'{"error":"Not Found"}')

    def _coin(self, dataset: str, coin_id: str, query: Mapping[str, str]) -> None:
        data = self.server.data
        if "vs_currency" not in query:
            self._send(422, b'{"error":"Missing parameter vs_currency"}')
            return
        days = query.get("days", "")
        if days != "max" and not days.isdigit():
            self._send(422, b'{"error":"Invalid days parameter"}')
            return
        if days == "max" or int(days) > data.max_days:
            self._send(401, beyond_time_range_body(datetime.now(UTC)))
            return
        body = data.coin_bodies.get(dataset, {}).get(coin_id)
        if body is None or query["vs_currency"] != data.vs_currency:
            self._send(404, COIN_NOT_FOUND)
            return
        self._send(200, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: ReplayData, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.data = data
        self.requests: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, for rate tests


class ReplayServer:
    """Context manager: serves `data` on 127.0.0.1 on a free port; `.api_url` ends in /api/v3."""

    def __init__(self, data: ReplayData | None = None, *, port: int = 0) -> None:
        self._server = _Server(data or sample_data(), port)
        # shutdown() waits for the serve loop's next poll: keep that short, not the 0.5 s default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def api_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{API_PREFIX}"

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    @property
    def arrivals(self) -> list[float]:
        """When each request arrived (time.monotonic()), in order."""
        return self._server.arrivals

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """`python -m cryptolake.replay [--port 8080]`: serve the bundled sample for demos."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cryptolake.replay", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    args = parser.parse_args(argv)
    with ReplayServer(port=args.port) as server:
        print(f"replaying recorded CoinGecko responses at {server.api_url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
