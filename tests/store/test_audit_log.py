"""The audit log in SQL: append, list, verify, tamper detection and concurrent appenders on one chain."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from bot.store.audit import GENESIS_HASH
from bot.store.store import Store
from tests.store.conftest import OpenStore
from tests.store.factories import T0, audit_entry


async def _append(store: Store, n: int) -> None:
    for i in range(n):
        await store.append_audit(audit_entry(i))


async def test_append_chains_rows(store: Store) -> None:
    """Rows get ids 1..n, each linking to the previous hash, and verify."""
    records = [await store.append_audit(audit_entry(i)) for i in range(3)]
    assert [r.id for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert await store.list_audit() == records
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.checked, verdict.first_bad_id) == (True, 3, None)


async def test_empty_log_verifies(store: Store) -> None:
    """An empty log is intact."""
    verdict = await store.verify_audit()
    assert verdict.ok and verdict.checked == 0


async def test_list_since_and_limit(store: Store) -> None:
    """`since` gives the first rows at or after a time; without it, the newest rows, oldest first."""
    await _append(store, 5)
    assert [r.id for r in await store.list_audit(since=T0 + timedelta(seconds=2), limit=2)] == [3, 4]
    assert [r.id for r in await store.list_audit(limit=2)] == [4, 5]


async def test_an_edited_row_is_detected(store: Store) -> None:
    """Changing a row's result breaks its hash."""
    await _append(store, 4)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET result = 'refused' WHERE id = 2"))
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.first_bad_id) == (False, 2)
    assert "edited" in verdict.reason


async def test_edited_params_are_detected(store: Store) -> None:
    """Changing a row's JSON params breaks its hash too."""
    await _append(store, 2)
    async with store.engine.begin() as conn:
        await conn.execute(text("""UPDATE audit_log SET params = '{"n": "7"}' WHERE id = 1"""))
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.first_bad_id) == (False, 1)


async def test_a_deleted_row_is_detected(store: Store) -> None:
    """Deleting a middle row leaves a gap at the next row."""
    await _append(store, 4)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id = 2"))
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)
    assert "missing" in verdict.reason


async def test_deleting_the_newest_row_is_detected(store: Store) -> None:
    """Deleting the last row disagrees with the chain head; appending afterwards does not hide it."""
    await _append(store, 3)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)
    await store.append_audit(audit_entry(9))
    assert not (await store.verify_audit()).ok


async def test_reordered_rows_are_detected(store: Store) -> None:
    """Swapping two rows' ids (a reorder) breaks the chain at the first of them."""
    await _append(store, 4)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET id = 100 WHERE id = 2"))
        await conn.execute(text("UPDATE audit_log SET id = 2 WHERE id = 3"))
        await conn.execute(text("UPDATE audit_log SET id = 3 WHERE id = 100"))
    verdict = await store.verify_audit()
    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


async def test_concurrent_appenders_keep_one_chain(open_store: OpenStore) -> None:
    """Two Store objects (two replicas) appending at once produce one gap-free chain."""
    first, second = await open_store(), await open_store()

    async def burst(store: Store, offset: int) -> None:
        await asyncio.gather(*(store.append_audit(audit_entry(offset + i)) for i in range(15)))

    await asyncio.gather(burst(first, 0), burst(second, 100))
    verdict = await first.verify_audit()
    assert (verdict.ok, verdict.checked) == (True, 30)
    assert [r.id for r in await second.list_audit(limit=100)] == list(range(1, 31))


@pytest.mark.parametrize(
    "params",
    [
        {"password": "hunter2"},
        {"registry_password": "x"},
        {"token": "abc"},
        {"slackToken": "abc"},
        {"secret_value": "abc"},
        {"auth": "dXNlcjpwYXNz"},
        {".dockerconfigjson": "{}"},
        {"note": "xoxb-123456789012-abcdefgh"},
        {"note": '{"auths": {"ghcr.io": {}}}'},
    ],
)
async def test_secret_params_are_refused(store: Store, params: dict[str, str]) -> None:
    """Keys or values that look like credentials are refused and nothing is written."""
    with pytest.raises(ValueError, match=r"secret|credential"):
        await store.append_audit(audit_entry(params=params))
    assert await store.list_audit() == []
