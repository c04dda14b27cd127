"""Migrations: upgrade from empty is idempotent and safe concurrently, and the models match the migration."""

from __future__ import annotations

import asyncio
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

from bot.store.migrate import at_head, current_revision, downgrade, head_revision, migrations_dir, script_heads, upgrade
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


def test_script_heads_read_without_alembic_match_alembic() -> None:
    """The revision lines read as text name the same single head as Alembic's script directory."""
    assert script_heads() == {head_revision()}


def test_script_heads_of_a_branched_history(tmp_path: Path) -> None:
    """Two scripts on one parent are two heads; a merge script joins them into one."""
    (tmp_path / "a.py").write_text('revision: str = "aaa"\ndown_revision: str | None = None\n')
    (tmp_path / "b.py").write_text('revision = "bbb"\ndown_revision = "aaa"\n')
    (tmp_path / "c.py").write_text("revision = 'ccc'\ndown_revision = 'aaa'\n")
    assert script_heads(tmp_path) == {"bbb", "ccc"}
    (tmp_path / "d.py").write_text('revision = "ddd"\ndown_revision = ("bbb", "ccc")\n')
    assert script_heads(tmp_path) == {"ddd"}


async def test_a_restart_at_head_imports_no_alembic(empty_url: str) -> None:
    """Once the schema is at head, `upgrade` on start reads the version and returns without importing Alembic
    (a fresh interpreter, so that nothing imported it before); a database not at head is not taken for one."""
    assert not await at_head(empty_url)
    await upgrade(empty_url)
    assert await at_head(empty_url)
    code = (
        "import asyncio, sys\n"
        "from bot.store.migrate import upgrade\n"
        f"asyncio.run(upgrade({empty_url!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "[]"
    await downgrade(empty_url, "base")
    assert not await at_head(empty_url)


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
