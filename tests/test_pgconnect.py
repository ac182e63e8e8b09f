"""What a Postgres failure means: the driver's words mapped to a cause and a fix, once.

The messages are libpq's and the server's own, as DuckDB's postgres extension and psycopg
report them (the shutting-down one was met by tests/faults/test_postgres_dies.py: a
publish worker connecting while `pg_ctl stop` ran).
"""

from __future__ import annotations

import pytest

from cryptolake.pgconnect import connection_lost, explain_pg, scrub

SHUTTING_DOWN = (
    'IO Error: Unable to connect to Postgres at "<dsn>": connection to server at '
    '"127.0.0.1", port 53153 failed: FATAL: the database system is shutting down.'
)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (SHUTTING_DOWN, "not accepting connections (it is shutting down)"),
        (
            SHUTTING_DOWN.replace("shutting down", "starting up"),
            "not accepting connections yet (it is starting up)",
        ),
        (
            SHUTTING_DOWN.replace("shutting down", "in recovery mode"),
            "not accepting connections (it is recovering from a crash)",
        ),
        (
            'connection to server at "127.0.0.1", port 5 failed: Connection refused',
            "not accepting connections (it stopped, or is restarting)",
        ),
        (
            "server closed the connection unexpectedly. This probably means the server "
            "terminated abnormally",
            "the connection to Postgres was lost",
        ),
    ],
)
def test_a_server_that_went_away_is_named_with_its_fix(message: str, cause: str) -> None:
    explained = explain_pg(message)
    assert cause in explained
    assert explained.endswith("publish again once it is back.") or "in a moment" in explained
    assert connection_lost(message)


def test_a_refused_statement_is_not_a_lost_connection() -> None:
    message = 'ERROR: relation "cryptolake.coin_daily" does not exist'
    assert not connection_lost(message)
    assert explain_pg(message) == message


def test_libpq_s_hint_on_its_own_line_becomes_a_sentence_of_its_own() -> None:
    message = (
        'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
        "connections?"
    )
    assert scrub(message, "postgresql://postgres:s3cret-pw@127.0.0.1:5999/test") == (
        'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
        "Connection refused. Is the server running on that host and accepting TCP/IP "
        "connections?"
    )
