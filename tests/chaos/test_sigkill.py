"""Chaos: the bot process is killed with SIGKILL mid-incident (and mid-action) and started again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.model import ActionKind, Proposal, ProposalStatus
from bot.store.migrate import upgrade
from bot.store.store import Store
from tests.chaos.conftest import (
    BotProcess,
    World,
    audit,
    check_invariants,
    settled,
    wait_for,
)


@pytest.fixture
def processes() -> Iterator[list[BotProcess]]:
    """Bot processes started by a test; any still alive at the end is terminated."""
    started: list[BotProcess] = []
    yield started
    for p in started:
        p.terminate()


# Each step waits on a condition up to this long: a restarted process imports, migrates, wins the Lease and
# drains the outbox; on a loaded 2-core CI machine that can take far longer than the usual 2-3 s.
STEP_S = 60.0


def _start(world: World, tmp_path: Path, processes: list[BotProcess], n: int, **executor: float) -> BotProcess:
    proc = BotProcess(world, tmp_path / f"bot-{n}.log", timings={"executor": executor} if executor else None)
    proc.start()
    processes.append(proc)
    return proc


async def _open_workloads(world: World, store: Store) -> set[str]:
    incidents = await store.recent_incidents(limit=1000, cluster=world.name)
    return {i.workload.name for i in incidents if i.resolved_at is None}


def _log(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp_path.glob("bot-*.log")))


async def test_sigkill_after_the_parent_and_after_a_reply(
    world_factory: Callable[[str], Awaitable[World]], chaos_db: str, tmp_path: Path, processes: list[BotProcess]
) -> None:
    """Killed between Slack's answer and the commit (a parent, then a reply): the restarted bot posts nothing twice."""
    world = await world_factory(chaos_db)
    slack = world.slack
    world.fail("shop", "api", replicas=2)
    world.fail("billing", "ledger")
    slack.crash_after_send("chat.postMessage", times=1)  # Slack keeps the first parent, the bot hears a 500

    await upgrade(chaos_db)
    store = await Store.open(chaos_db)
    try:
        first = _start(world, tmp_path, processes, 1)

        async def api_stored_and_a_parent_posted() -> bool:
            # The test relies on process 1 having stored the api incident before it dies: api is fixed while no bot
            # runs, and only a stored incident can be resolved by the next process's reconcile.
            return len(world.parents()) >= 1 and "api" in await _open_workloads(world, store)

        await wait_for(api_stored_and_a_parent_posted, STEP_S, lambda: f"api stored, a parent posted\n{_log(tmp_path)}")
        first.kill()  # a parent is in Slack; a row is claimed or marked for retry, not sent
        assert world.parent_keys(), "the parent carries its incident key"

        world.fix("shop", "api")  # recovers while no bot runs
        world.fail("web", "frontend")  # fails while no bot runs

        second = _start(world, tmp_path, processes, 2)
        replies_before = _replies(world)
        await wait_for(
            _has(lambda: _replies(world) > replies_before), STEP_S, lambda: f"a reply by process 2\n{_log(tmp_path)}"
        )
        second.kill()  # right after a reply reached Slack, perhaps before the row was marked sent

        await audit(store, "chaos.between_kills", "process-2")
        third = _start(world, tmp_path, processes, 3)
        await wait_for(
            lambda: settled(world, store, open_={"ledger", "frontend"}, resolved={"api"}),
            STEP_S,
            lambda: f"process 3 finished the work\n{_log(tmp_path)}",
        )
        assert third.alive()
        third.terminate()
        await check_invariants(world, store)
    finally:
        await store.close()


async def test_sigkill_during_an_approved_delete_runs_it_at_most_once(
    world_factory: Callable[[str], Awaitable[World]], sqlite_db: str, tmp_path: Path, processes: list[BotProcess]
) -> None:
    """An approved delete-pod whose run is cut by SIGKILL is never run again: one DELETE, then failed "interrupted"."""
    world = await world_factory(sqlite_db)
    world.fail("shop", "api")
    await upgrade(sqlite_db)
    first = _start(world, tmp_path, processes, 1, stale_run_s=1.0)
    store = await Store.open(sqlite_db)
    try:
        await wait_for(lambda: settled(world, store, open_={"api"}, resolved=set()), STEP_S, "api posted")
        incident = (await store.open_incidents(world.name))[0]
        pod = incident.pods[0]
        now = datetime.now(UTC)
        proposal = await store.create_proposal(
            Proposal(
                action=ActionKind.DELETE_POD,
                cluster=world.name,
                namespace="shop",
                target=pod,
                params={"threaded": "yes", "channel": incident.channel},
                requested_by="U0CHAOS",
                requested_by_name="chaos",
                created_at=now,
                expires_at=now + timedelta(minutes=30),
                incident_key=incident.key,
            )
        )
        assert proposal.id is not None
        delete_path = f"/api/v1/namespaces/shop/pods/{pod}"
        world.cluster.faults.latency_s = 1.5  # every API answer is slow: the DELETE is in flight long enough
        approved = await store.transition_proposal(
            proposal.id, ProposalStatus.PENDING, ProposalStatus.APPROVED, decided_by="U0APPROVER"
        )
        assert approved is not None

        def deletes() -> int:
            return sum(
                1 for method, path in world.cluster.requests if method == "DELETE" and path.startswith(delete_path)
            )

        await wait_for(_has(lambda: deletes() >= 1), STEP_S, lambda: f"the executor sent the DELETE\n{_log(tmp_path)}")
        first.kill()  # the DELETE reached the API server; the bot never heard the answer
        world.cluster.faults.latency_s = 0.0

        _start(world, tmp_path, processes, 2, stale_run_s=1.0)

        async def decided() -> bool:
            p = await store.get_proposal(proposal.id or 0)
            return p is not None and p.status in (ProposalStatus.SUCCEEDED, ProposalStatus.FAILED)

        await wait_for(decided, STEP_S, lambda: f"the interrupted run was closed\n{_log(tmp_path)}")
        final = await store.get_proposal(proposal.id)
        assert final is not None
        assert final.status is ProposalStatus.FAILED and "interrupted" in (final.result or ""), final
        assert deletes() == 1, f"the approved delete ran {deletes()} times"
        # Whether that one DELETE took effect depends on the API server (the simulator drops a request whose client
        # went away before answering it): "outcome unknown" is the truth, and a human proposes again if needed.
        actions = [r.entry.action for r in await store.list_audit(limit=100) if r.entry.proposal_id == proposal.id]
        assert actions.count("action.interrupted") == 1 and "action.executed" not in actions, actions
        assert (await store.verify_audit()).ok

        def told() -> int:
            return sum(1 for m in world.slack.messages if m.thread_ts == incident.thread_ts and "interrupted" in m.text)

        await wait_for(_has(lambda: told() == 1), STEP_S, lambda: f"the thread was told\n{_log(tmp_path)}")
        await wait_for(lambda: settled(world, store, open_={"api"}, resolved=set()), STEP_S, "outbox idle")
        await check_invariants(world, store)
        assert told() == 1
    finally:
        await store.close()


def _replies(world: World) -> int:
    return sum(1 for m in world.slack.messages if m.thread_ts is not None)


def _has(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return check()

    return condition
