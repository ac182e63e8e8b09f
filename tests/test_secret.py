"""Secret hides its value from every accidental print; redact_dsn blanks DSN passwords."""

from __future__ import annotations

import pytest

from cryptolake.secret import Secret, redact_dsn


def test_secret_is_masked_everywhere_but_reveal() -> None:
    secret = Secret("CG-abc123")

    assert secret.reveal() == "CG-abc123"
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"key={secret}" == "key=***"
    assert "CG-abc123" not in repr([secret, {"k": secret}])


def test_secret_equality_hash_and_truth() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1
    assert not Secret("")
    assert Secret("x")


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        (
            "postgresql://etl:s3cret@db.internal:5432/market",
            "postgresql://etl:***@db.internal:5432/market",
        ),
        # '@' and ':' inside the password: the host starts after the last '@'.
        (
            "postgres://etl:p@ss:w0rd@10.0.0.5/market?sslmode=require",
            "postgres://etl:***@10.0.0.5/market?sslmode=require",
        ),
        (
            "postgresql://db.internal/market?user=etl&password=s3cret&sslmode=require",
            "postgresql://db.internal/market?user=etl&password=***&sslmode=require",
        ),
        ("postgresql://etl@db.internal/market", "postgresql://etl@db.internal/market"),
        ("postgresql:///market", "postgresql:///market"),
        (
            "postgresql://etl:s3cret@/market?host=/var/run/postgresql",
            "postgresql://etl:***@/market?host=/var/run/postgresql",
        ),
        (
            "host=db.internal port=5432 dbname=market user=etl password=s3cret",
            "host=db.internal port=5432 dbname=market user=etl password=***",
        ),
        (
            "host=db password = 's3 cr\\'et' dbname=market",
            "host=db password = *** dbname=market",
        ),
        ("host=db PASSWORD=s3cret", "host=db PASSWORD=***"),
        ("host=db dbname=market", "host=db dbname=market"),
    ],
)
def test_redact_dsn(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted
    assert "s3cret" not in redact_dsn(dsn)
