"""Shared fixtures. `db_url`: every SQL test runs on SQLite (a temp file) and on PostgreSQL (a fresh database).

PostgreSQL is expected at 127.0.0.1:5432, user `postgres`, trust auth (see docs/DEVELOPMENT.md). One database
named `ipd_test_<random>` is created per test session and dropped at its end. When the server is unreachable the
`postgres` cases are skipped with the reason, unless the environment variable CI is set: then they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> None:
    """Skip the current test because a real service is missing, or fail it when running in CI."""
    if _ci():
        pytest.fail(f"{reason} (CI is set: integration services are required)")
    pytest.skip(reason)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_database_url(name: str) -> str:
    """The SQLAlchemy URL of the database `name` on the test server."""
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def create_pg_database(prefix: str = "ipd_test") -> str:
    """Create an empty database on the test server and return its name (raises OSError/asyncpg errors if down)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_pg_database(name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_pg_database(prefix: str = "ipd_test") -> Iterator[str]:
    """Yield the URL of a new PostgreSQL database, dropped afterwards (skips, or fails in CI, if the server is down)."""
    try:
        name = create_pg_database(prefix)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} is unavailable: {type(exc).__name__}: {exc}")
        raise  # unreachable: unavailable() always raises
    try:
        yield pg_database_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end); skips if the server is down."""
    yield from fresh_pg_database()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One database several bots share (HA replicas, clusters): a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    yield from fresh_pg_database("ipd_ha")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL, once per backend: a new empty SQLite file, or the session's PostgreSQL database.

    The PostgreSQL database is shared by the whole session (it may already hold tables and rows from earlier
    tests): migrating is idempotent, and tests that need empty tables truncate them (see tests/store/conftest.py).
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'imagepull-doctor.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
