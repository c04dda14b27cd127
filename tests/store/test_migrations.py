"""Migrations: upgrade from empty is idempotent and safe concurrently, and the models match the migration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.migrate import current_revision, downgrade, head_revision, migrations_dir, upgrade
from bot.store.models import ALL_TABLES, metadata

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_url(db_url: str, request: pytest.FixtureRequest) -> str:
    """A database that was never migrated: a new SQLite file, or a PostgreSQL database of its own."""
    if db_url.startswith("sqlite"):
        return db_url
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _run(url: str, fn: object) -> object:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_upgrade_twice_and_concurrently_is_safe(empty_url: str) -> None:
    """Two replicas upgrading at once, then a restart upgrading again, leave the schema at head."""
    import asyncio

    assert await current_revision(empty_url) is None
    await asyncio.gather(upgrade(empty_url), upgrade(empty_url))
    await upgrade(empty_url)
    assert await current_revision(empty_url) == head_revision()
    assert {t.name for t in ALL_TABLES} <= await _run(empty_url, _tables)  # type: ignore[operator]


async def test_models_match_the_migration(empty_url: str) -> None:
    """Autogenerate finds nothing to change after `upgrade head`: models and migration agree."""
    await upgrade(empty_url)
    assert await _run(empty_url, _diff) == []


async def test_downgrade_to_base_and_back(empty_url: str) -> None:
    """The initial migration's downgrade drops every table, and upgrading again restores them."""
    await upgrade(empty_url)
    await downgrade(empty_url, "base")
    assert not {t.name for t in ALL_TABLES} & await _run(empty_url, _tables)  # type: ignore[operator]
    await upgrade(empty_url)
    assert await current_revision(empty_url) == head_revision()


def test_revision_files_are_date_prefixed() -> None:
    """Every revision file is named YYYYMMDD_<rev>_<slug>.py and the folder is found from the package."""
    assert migrations_dir() == REPO / "migrations"
    names = [p.name for p in (REPO / "migrations" / "versions").glob("*.py") if p.name != "__init__.py"]
    assert names
    assert all(re.fullmatch(r"20\d{6}_[0-9a-f]+_\w+\.py", n) for n in names), names


def test_alembic_command_line_sees_no_pending_change(tmp_path: Path) -> None:
    """`alembic upgrade head` then `alembic check` through alembic.ini work from the repository root."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "-x", f"url={url}"]
    env = {k: v for k, v in os.environ.items() if k != "IMAGEPULL_DATABASE_URL"}
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run([*alembic, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr
