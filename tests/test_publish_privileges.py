"""`cryptolake publish` as Postgres roles that lack privileges, and `status`'s last publish.

Each case creates throwaway LOGIN roles (and schemas) as the superuser and drops them again,
whatever happens. A role that may not do what a publish needs gets one `error:` line naming
the role, the object, the privilege and the GRANT that fixes it, and Postgres is left as it
was; a role that owns its schema needs nothing more.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .clis import one_error_line, run_cli

# What a publish creates in its schema (besides one staging partition per day).
PUBLISHED_TABLES = {
    "staging_market_snapshots",
    "market_cap_segments",
    "coin_daily",
    "market_daily",
    "crypto_analytics_mart",
    "market_segment_analysis",
    "category_leaderboard",
    "publish_log",
}
PUBLISHED_LINE = re.compile(r"published to .* schema (\w+) \(publish (\S+)\)")


@dataclass
class Admin:
    """The superuser's connection, and the roles and schemas a test made (dropped after)."""

    dsn: str
    conn: psycopg.Connection[Any]
    roles: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)

    @property
    def database(self) -> str:
        return str(conninfo_to_dict(self.dsn)["dbname"])

    def role(self) -> str:
        """A new LOGIN role with no privileges beyond PUBLIC's."""
        name = f"t_role_{uuid.uuid4().hex[:10]}"
        self.conn.execute(f"create role {name} login")
        self.roles.append(name)
        return name

    def schema(self, authorization: str | None = None) -> str:
        """A new schema, created by the superuser (owned by `authorization` if given)."""
        name = self.schema_name()
        owner = f" authorization {authorization}" if authorization else ""
        self.conn.execute(f"create schema {name}{owner}")
        return name

    def schema_name(self) -> str:
        """A fresh schema name, dropped in teardown if anything creates it."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.schemas.append(name)
        return name

    def dsn_for(self, role: str) -> str:
        """The test DSN, logging in as `role` (trust authentication)."""
        return make_conninfo(self.dsn, user=role)

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def schema_exists(self, schema: str) -> bool:
        return self.rows("select to_regnamespace(%s)", [schema])[0][0] is not None

    def relations(self, schema: str) -> list[tuple[str, str]]:
        """(name, owner) of every relation in `schema`."""
        return [
            (str(name), str(owner))
            for name, owner in self.rows(
                "select c.relname, pg_get_userbyid(c.relowner) from pg_class c "
                "join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s "
                "order by 1",
                [schema],
            )
        ]

    def owned_by(self, role: str) -> int:
        """Relations and schemas `role` owns anywhere in the database."""
        (row,) = self.rows(
            "select (select count(*) from pg_class where relowner = %s::regrole)"
            " + (select count(*) from pg_namespace where nspowner = %s::regrole)",
            [role, role],
        )
        return int(row[0])

    def published_state(self, schema: str) -> list[tuple[Any, ...]]:
        """What a publish could change: relations, owners, row counts and the publish log."""
        state: list[tuple[Any, ...]] = list(self.relations(schema))
        for table in sorted(PUBLISHED_TABLES):
            state.append((table, self.rows(f"select count(*) from {schema}.{table}")[0][0]))
        state += self.rows(f"select publish_id, lake_version from {schema}.publish_log order by 1")
        return state


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[Admin]:
    """Superuser access; drops the test's schemas, then its roles and all they own."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        made = Admin(pg_dsn, conn)
        try:
            yield made
        finally:
            for schema in made.schemas:
                conn.execute(f"drop schema if exists {schema} cascade")
            for role in made.roles:
                conn.execute(f"drop owned by {role} cascade")
                conn.execute(f"drop role {role}")


def publish_as(lake: Path, admin: Admin, role: str, schema: str) -> tuple[int, str, str]:
    result = run_cli(
        "publish", "--lake", str(lake), "--postgres", admin.dsn_for(role), "--pg-schema", schema,
        env={"COLUMNS": "200"},
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


@pytest.mark.postgres
def test_role_without_create_on_the_database_is_told_how_to_get_a_schema(
    sample_lake: Path, admin: Admin
) -> None:
    role, schema, db = admin.role(), admin.schema_name(), admin.database

    code, out, err = publish_as(sample_lake, admin, role, schema)

    assert code == 1, out + err
    assert one_error_line(err) == (
        f"error: Postgres role {role} may not create schema {schema} in database {db} (it "
        "needs CREATE on the database): as the database's owner or a superuser, GRANT CREATE "
        f"ON DATABASE {db} TO {role}, or create the schema for it: CREATE SCHEMA {schema} "
        f"AUTHORIZATION {role}."
    )
    assert not admin.schema_exists(schema)
    assert admin.owned_by(role) == 0


@pytest.mark.postgres
def test_role_that_owns_its_schema_publishes_without_create_on_the_database(
    sample_lake: Path, admin: Admin
) -> None:
    role = admin.role()
    schema = admin.schema(authorization=role)
    privilege = "select has_database_privilege(%s, %s, 'CREATE')"
    assert admin.rows(privilege, [role, admin.database]) == [(False,)]  # the point of the case

    code, out, err = publish_as(sample_lake, admin, role, schema)

    assert code == 0, err
    published = PUBLISHED_LINE.search(out)
    assert published and published[1] == schema, out
    tables = dict(admin.relations(schema))
    assert PUBLISHED_TABLES <= tables.keys()
    assert set(tables.values()) == {role}
    assert admin.rows(f"select publish_id from {schema}.publish_log") == [(published[2],)]
    assert admin.rows(f"select count(*) from {schema}.staging_market_snapshots") == [(100,)]


@pytest.mark.postgres
def test_role_with_only_usage_on_the_schema_is_told_to_grant_create(
    sample_lake: Path, admin: Admin
) -> None:
    role, schema, db = admin.role(), admin.schema(), admin.database
    admin.conn.execute(f"grant usage on schema {schema} to {role}")

    code, out, err = publish_as(sample_lake, admin, role, schema)

    assert code == 1, out + err
    assert one_error_line(err) == (
        f"error: Postgres role {role} may not create tables in schema {schema} of database "
        f"{db} (it needs USAGE and CREATE on the schema): GRANT USAGE, CREATE ON SCHEMA "
        f"{schema} TO {role}."
    )
    assert len(err) < 400, err
    assert out == ""
    ddl = r"\b(create (unlogged )?table|alter table|create (unique )?index|insert into)\b"
    assert not re.search(ddl, err, flags=re.IGNORECASE), err
    assert "if not exists" not in err.lower()
    assert admin.relations(schema) == []
    assert admin.owned_by(role) == 0


@pytest.mark.postgres
def test_role_that_does_not_own_the_published_tables_is_told_who_does(
    sample_lake: Path, admin: Admin
) -> None:
    first, second = admin.role(), admin.role()
    schema = admin.schema()
    admin.conn.execute(f"grant usage, create on schema {schema} to {first}, {second}")
    code, out, err = publish_as(sample_lake, admin, first, schema)
    assert code == 0, err
    before = admin.published_state(schema)

    code, out, err = publish_as(sample_lake, admin, second, schema)

    assert code == 1, out + err
    line = one_error_line(err)
    s, a, b = re.escape(schema), re.escape(first), re.escape(second)
    assert re.fullmatch(
        rf"error: Postgres role {b} does not own {s}\.category_leaderboard, {s}\.coin_daily, "
        rf"{s}\.crypto_analytics_mart, {s}\.crypto_market_summary and 7 more \(owner {a}\), and a "
        rf"publish alters, indexes and analyzes its tables: publish as {a}, or REASSIGN OWNED "
        rf"BY {a} TO {b} \(run as {a} or a superuser\)\.",
        line,
    ), line
    assert admin.published_state(schema) == before
    assert admin.owned_by(second) == 0


@pytest.mark.postgres
def test_status_shows_the_last_publish_from_postgres(
    sample_lake: Path, pg_dsn: str, pg_schema: str
) -> None:
    by_command = run_cli(
        "publish", "--lake", str(sample_lake),
        "--postgres", pg_dsn, "--pg-schema", pg_schema,
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert by_command.returncode == 0, by_command.stderr
    published = PUBLISHED_LINE.search(by_command.stdout)
    assert published, by_command.stdout
    publish_id = published[2]
    env = {"CRYPTOLAKE_POSTGRES_DSN": pg_dsn, "COLUMNS": "250"}

    shown = run_cli("status", "--lake", str(sample_lake), "--pg-schema", pg_schema, env=env)
    as_json = run_cli(
        "status", "--json", "--lake", str(sample_lake), "--pg-schema", pg_schema, env=env
    )

    assert shown.returncode == 0, shown.stderr
    (line,) = [ln for ln in shown.stdout.splitlines() if ln.startswith("last publish:")]
    assert line.startswith(f"last publish: {publish_id} at "), line
    assert re.search(
        rf"schema {pg_schema}, lake snapshot \d+ \(from Postgres' publish_log\)$", line
    ), line
    assert as_json.returncode == 0, as_json.stderr
    last = json.loads(as_json.stdout)["last_publish"]
    assert (last["publish_id"], last["schema"]) == (publish_id, pg_schema)
    with psycopg.connect(pg_dsn) as conn:
        logged = conn.execute(f"select count(*) from {pg_schema}.publish_log").fetchone()
    assert logged == (1,)


def test_status_without_a_dsn_says_no_postgres_is_configured(sample_lake: Path) -> None:
    shown = run_cli("status", "--lake", str(sample_lake), env={"COLUMNS": "250"})

    assert shown.returncode == 0, shown.stderr
    assert "last publish: no Postgres configured (set CRYPTOLAKE_POSTGRES_DSN)" in (
        shown.stdout.splitlines()
    )
