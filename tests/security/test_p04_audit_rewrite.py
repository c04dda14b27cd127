"""Point 4 (Medium): the audit log can be rewritten by someone who can write to the database.

Audited steps are made through the real Slack app (signed requests: a proposal, a refused approval, an approval);
then the database is tampered with as an attacker holding the database credentials but not the audit key would:
(a) delete the newest rows and move the head back, (b) delete every row and the head, (c) rewrite an approver and
recompute the unkeyed SHA-256 chain and head. `imagepull-doctor audit verify` (the real CLI, in a subprocess) must
exit 1 each time, and 0 on the untouched log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.store.audit import canonical_json
from bot.store.audit_repo import audit_from_row
from bot.store.store import Store
from tests.handlers.conftest import (
    ADMIN,
    REQUESTER,
    STRANGER,
    World,
    action_body,
    command_body,
    eventually,
    eventually_async,
    failing_deployment,
    signed_headers,
)
from tests.security.conftest import rebuild, serve_app

KEY = "audit-key-for-tests-0123456789abcdef"


async def _cli_verify(db: Path, key: str | None = KEY) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPULL_")}
    env["IMAGEPULL_DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    if key is not None:
        env["IMAGEPULL_AUDIT__HMAC_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "audit",
        "verify",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=db.parent,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode() + err.decode()


async def _audited_history(world: World) -> Path:
    db = Path(world.db_url.removeprefix("sqlite+aiosqlite:///"))
    settings = world.flows.settings.model_copy(deep=True)
    settings.audit.hmac_key = type(settings.slack.signing_secret)(KEY)  # type: ignore[misc]
    await rebuild(world, settings, store=await Store.open(world.db_url, audit_key=KEY.encode()))
    pod = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")[0]["metadata"]["name"]
    async with serve_app(world) as endpoint:
        body = command_body(f"delete-pod shop/{pod}")
        assert (await endpoint.post(body, signed_headers(body)))[0] == 200
        (proposal,) = await eventually_async(world.store.pending_proposals)
        for answers, user in enumerate((STRANGER, ADMIN), start=2):
            click = action_body("imagepull:approve", json.dumps({"proposal": proposal.id}), user)
            assert (await endpoint.post(click, signed_headers(click)))[0] == 200
            await eventually(lambda n=answers: len(world.slack.ephemerals) >= n, 5)
    assert len(await world.store.list_audit()) >= 3
    return db


def _copy(db: Path, tamper: Callable[[sqlite3.Connection], None]) -> Path:
    target = db.with_name(f"tampered-{tamper.__name__}.db")
    with sqlite3.connect(db) as source, sqlite3.connect(target) as copy:
        source.backup(copy)  # with the write-ahead log's pages
    with sqlite3.connect(target) as conn:
        tamper(conn)
    return target


def delete_newest_rows_and_move_head(conn: sqlite3.Connection) -> None:
    last = conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    conn.execute("DELETE FROM audit_log WHERE id = ?", (last,))
    prev_id, prev_hash = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    conn.execute("UPDATE audit_head SET last_id = ?, last_hash = ?", (prev_id, prev_hash))


def delete_every_row_and_the_head(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM audit_log")
    conn.execute("DELETE FROM audit_head")


def rewrite_approver_and_recompute_chain(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(
        "UPDATE audit_log SET actor_id = ?, actor_name = 'requester' WHERE action = 'proposal.approved'", (REQUESTER,)
    )
    prev = "0" * 64
    for row in conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall():
        mapping = dict(row)
        mapping["params"] = json.loads(mapping["params"])
        mapping["at"] = datetime.fromisoformat(mapping["at"]).replace(tzinfo=UTC)
        entry = audit_from_row(mapping).entry  # type: ignore[arg-type]
        digest = hashlib.sha256((prev + canonical_json(entry, row["id"])).encode()).hexdigest()
        conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row["id"]))
        prev = digest
        last_id = row["id"]
    conn.execute(
        "UPDATE audit_head SET last_id = ?, last_hash = ?, signature = NULL, keyed_from = NULL", (last_id, prev)
    )


@pytest.mark.parametrize(
    "tamper",
    [delete_newest_rows_and_move_head, delete_every_row_and_the_head, rewrite_approver_and_recompute_chain],
    ids=["a-newest-rows", "b-every-row-and-head", "c-rewritten-approver"],
)
async def test_audit_verify_detects_rewrites(world: World, tamper: Callable[[sqlite3.Connection], None]) -> None:
    db = await _audited_history(world)
    code, out = await _cli_verify(db)
    assert code == 0 and "intact" in out, out
    code, out = await _cli_verify(_copy(db, tamper))
    assert code == 1 and "BROKEN" in out, out
