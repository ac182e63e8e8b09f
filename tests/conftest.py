"""Shared fixtures: recorded CoinGecko bodies, a loopback replay server, lake settings, Postgres."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cryptolake.coingecko import CoinGeckoClient
from cryptolake.replay import ReplayData, ReplayServer
from cryptolake.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "coingecko"
# The 2026 top 250: a full page with every quirk, for ingest and silver. Its /global is not
# recorded, so gold (which checks markets against /global) is built from the 2023 trio below.
MARKETS_250 = "markets_usd_per250_page1_DonicusMcGinty-biz-active-rss_2026-02-15.json"
# Three bodies recorded together on 2023-01-08, minutes apart: the top 100 sum to 94.9% of
# /global's total, as they should. What gold is built from (and the bundled sample).
MARKETS = "markets_usd_JKorf-CoinGecko.Net_2023-01-08.json"
GLOBAL = "global_JKorf-CoinGecko.Net_2023-01-08.json"
CATEGORIES = "categories_JKorf-CoinGecko.Net_2023-01-08.json"


def fixture_bytes(name: str) -> bytes:
    """A recorded CoinGecko body from tests/fixtures/coingecko, byte for byte."""
    return (FIXTURES / name).read_bytes()


def replay_data(markets: str = MARKETS_250) -> ReplayData:
    return ReplayData(
        markets=fixture_bytes(markets),
        bodies={"/global": fixture_bytes(GLOBAL), "/coins/categories": fixture_bytes(CATEGORIES)},
    )


@dataclass
class FakeTime:
    """The one thing tests fake: `sleep` records each wait and moves `clock` and `now` on."""

    start: datetime = datetime(2026, 2, 15, 15, 47, 12, tzinfo=UTC)
    elapsed: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def clock(self) -> float:
        return self.elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def client(self, settings: Settings) -> CoinGeckoClient:
        """A real client on this fake time, with seeded jitter."""
        return CoinGeckoClient(
            settings, sleep=self.sleep, clock=self.clock, now=self.now, rng=random.Random(0)
        )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CRYPTOLAKE_* setting from the developer's shell reaches a test (the test harness's
    own CRYPTOLAKE_TEST_PG_DSN and CRYPTOLAKE_REQUIRE_PG stay)."""
    for name in list(os.environ):
        if name.startswith("CRYPTOLAKE_") and name not in HARNESS_VARIABLES:
            monkeypatch.delenv(name)
        if name.startswith("AWS_"):  # an object store's settings: a team-lake test sets them
            monkeypatch.delenv(name)


HARNESS_VARIABLES = {"CRYPTOLAKE_TEST_PG_DSN", "CRYPTOLAKE_REQUIRE_PG"}


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake built once by `cryptolake run --sample` (offline, bundled responses), shared by
    the session: tests only read it, or break a copy of it (`shutil.copytree`)."""
    from .clis import run_cli

    lake = tmp_path_factory.mktemp("sample") / "lake"
    built = run_cli("run", "--sample", "--quiet", "--lake", str(lake))
    assert built.returncode == 0, built.stderr
    return lake


class LakeTemplates:
    """Lakes built once a session, each test given a copy of its own (`shutil.copytree`, as
    with `sample_lake`): a lake many tests start from is built once, not once per test.

    A template is keyed by the function that builds it; it is never changed after its build.
    A copy reads its own files (the catalog's data path is always the lake folder given).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[Callable[[Path], object], Path] = {}

    def copy(self, build: Callable[[Path], object], to: Path) -> Path:
        """A copy at `to` (an empty folder, or none yet) of the lake `build` makes."""
        template = self.built.get(build)
        if template is None:
            template = Path(tempfile.mkdtemp(prefix=f"{build.__name__}-", dir=self.root)) / "lake"
            template.mkdir()
            build(template)
            self.built[build] = template
        shutil.copytree(template, to, dirs_exist_ok=True)
        return to


@pytest.fixture(scope="session")
def lake_templates(tmp_path_factory: pytest.TempPathFactory) -> LakeTemplates:
    return LakeTemplates(tmp_path_factory.mktemp("templates"))


@pytest.fixture
def fake_time() -> FakeTime:
    """Instant, recorded sleeps; `now` starts at 2026-02-15 15:47:12 UTC."""
    return FakeTime()


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on IPv4 loopback, any free port (no localhost lookup)."""
    return ("127.0.0.1", 0)


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A loopback server replaying the 250-coin markets page, /global and /coins/categories."""
    with ReplayServer(replay_data()) as server:
        yield server


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """An empty lake folder."""
    path = tmp_path / "lake"
    path.mkdir()
    return path


@pytest.fixture
def settings(lake: Path, replay: ReplayServer) -> Settings:
    """Settings pointing at the replay server with no throttle, as a test wants."""
    return Settings.resolve(env={}, lake=lake, api_url=replay.api_url, rate=60_000.0)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test Postgres DSN; skipped without CRYPTOLAKE_TEST_PG_DSN, failed if CI requires it."""
    dsn = os.environ.get("CRYPTOLAKE_TEST_PG_DSN")
    if not dsn:
        if os.environ.get("CRYPTOLAKE_REQUIRE_PG") == "1":
            pytest.fail("CRYPTOLAKE_REQUIRE_PG=1 but CRYPTOLAKE_TEST_PG_DSN is not set")
        pytest.skip("set CRYPTOLAKE_TEST_PG_DSN (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return dsn


@pytest.fixture
def pg_catalog(pg_dsn: str) -> Iterator[str]:
    """A fresh Postgres database for a DuckLake catalog, dropped afterwards."""
    name = f"lake_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    try:
        info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
        yield (
            f"postgres:dbname={name} host={info.get('host', '127.0.0.1')} "
            f"port={info.get('port', 5432)} user={info.get('user', 'postgres')}"
        )
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema name in the test database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {name} cascade")
