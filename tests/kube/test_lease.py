"""Lease leader election against the simulated API server, through the real kubernetes_asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.kube.lease import LeaderElector
from testkit.kube.apiserver import SimCluster

NS = "imagepull"
LEASE = "imagepull-doctor"


@pytest.fixture(autouse=True)
def namespace(sim: SimCluster) -> None:
    sim.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def elector(api: Any, identity: str, **kwargs: Any) -> LeaderElector:
    params: dict[str, Any] = {"lease_duration_s": 1, "renew_s": 0.2, "retry_s": 0.1, "renew_deadline_s": 0.6}
    params.update(kwargs)
    return LeaderElector(api, namespace=NS, name=LEASE, identity=identity, **params)


@contextlib.asynccontextmanager
async def running(*electors: LeaderElector) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    tasks = {e.identity: asyncio.create_task(e.run()) for e in electors}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def first_leader(*electors: LeaderElector, timeout: float = 3.0) -> LeaderElector:
    async with asyncio.timeout(timeout):
        while True:
            leaders = [e for e in electors if e.is_leader.is_set()]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.01)


def lease_spec(sim: SimCluster) -> dict[str, Any]:
    lease = sim.get("Lease", NS, LEASE)
    assert lease is not None
    return dict(lease["spec"])


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def test_two_electors_exactly_one_leader(sim: SimCluster, api: Any) -> None:
    """Two replicas campaigning at once: one leads, the other waits, and they never both lead."""
    a, b = elector(api, "pod-a"), elector(api, "pod-b")
    async with running(a, b):
        leader = await first_leader(a, b)
        for _ in range(60):  # ~1.2 s: several renew periods and lease durations
            assert sum(e.is_leader.is_set() for e in (a, b)) == 1
            await asyncio.sleep(0.02)
        spec = lease_spec(sim)
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseTransitions"] == 0
        assert spec["leaseDurationSeconds"] == 1
        assert parse_time(spec["renewTime"]) > datetime.now(UTC) - timedelta(seconds=1)
        other = b if leader is a else a
        assert other.observed_holder == leader.identity


async def test_takeover_after_leader_stops_renewing(sim: SimCluster, api: Any) -> None:
    """A leader that vanishes without releasing is replaced once its lease expires; transitions count it."""
    a = elector(api, "pod-a", release_on_cancel=False)
    b = elector(api, "pod-b")
    async with running(a) as tasks:
        await first_leader(a)
        async with running(b):
            await asyncio.sleep(0.4)
            assert not b.is_leader.is_set()
            tasks["pod-a"].cancel()
            await asyncio.gather(tasks["pod-a"], return_exceptions=True)
            last_renew = parse_time(lease_spec(sim)["renewTime"])
            assert lease_spec(sim)["holderIdentity"] == "pod-a"  # not released
            await first_leader(b, timeout=3.0)
            took_over = datetime.now(UTC)
            assert took_over >= last_renew + timedelta(seconds=1)  # not before the lease expired
            spec = lease_spec(sim)
            assert spec["holderIdentity"] == "pod-b" and spec["leaseTransitions"] == 1
            assert a.lost.is_set() and not a.is_leader.is_set()


async def test_clean_stop_releases_for_a_fast_handover(sim: SimCluster, api: Any) -> None:
    """Cancelling the leader releases the lease, so the other replica takes over long before expiry."""
    kwargs: dict[str, Any] = {"lease_duration_s": 5, "renew_deadline_s": 3}
    a, b = elector(api, "pod-a", **kwargs), elector(api, "pod-b", **kwargs)
    async with running(a, b) as tasks:
        leader = await first_leader(a, b)
        other = b if leader is a else a
        stopped = asyncio.get_running_loop().time()
        tasks[leader.identity].cancel()
        await asyncio.gather(tasks[leader.identity], return_exceptions=True)
        assert not leader.is_leader.is_set() and leader.lost.is_set()
        await first_leader(other, timeout=2.0)
        assert asyncio.get_running_loop().time() - stopped < 1.5  # the lease lasts 5 s
        spec = lease_spec(sim)
        assert spec["holderIdentity"] == other.identity and spec["leaseTransitions"] == 1


@pytest.mark.parametrize("fault", ["errors", "hang"])
async def test_steps_down_before_the_lease_could_be_taken(sim: SimCluster, api: Any, fault: str) -> None:
    """When renewing fails (500s or a hanging server), the leader steps down before its lease expires."""
    history: list[str] = []

    async def started() -> None:
        history.append("started")

    async def stopped() -> None:
        history.append("stopped")

    a = elector(api, "pod-a", on_started_leading=started, on_stopped_leading=stopped)
    async with running(a):
        await first_leader(a)
        await asyncio.sleep(0.3)
        if fault == "errors":
            sim.faults.fail_next(100_000, status=500, path_prefix="/apis/coordination.k8s.io/")
        else:
            sim.faults.latency_s = 10.0
        async with asyncio.timeout(3):
            await a.lost.wait()
        stepped_down = datetime.now(UTC)
        assert not a.is_leader.is_set()
        expiry = parse_time(lease_spec(sim)["renewTime"]) + timedelta(seconds=1)
        assert stepped_down < expiry
        sim.faults.clear()
        await first_leader(a, timeout=3.0)
        assert history == ["started", "stopped", "started"]
        assert not a.lost.is_set()


async def test_holds_a_live_lease_of_another(sim: SimCluster, api: Any) -> None:
    """A lease held and renewed by someone else is left alone."""
    now = datetime.now(UTC) + timedelta(seconds=30)
    sim.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS},
            "spec": {
                "holderIdentity": "someone-else",
                "leaseDurationSeconds": 15,
                "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "leaseTransitions": 4,
            },
        }
    )
    a = elector(api, "pod-a")
    async with running(a):
        await asyncio.sleep(0.5)
        assert not a.is_leader.is_set()
        assert a.observed_holder == "someone-else" and a.transitions == 4


def test_durations_are_validated(api: Any) -> None:
    """The renew deadline must be shorter than the lease, the renew period shorter than the deadline."""
    with pytest.raises(ValueError, match="renew_deadline_s"):
        elector(api, "x", lease_duration_s=1, renew_deadline_s=1)
    with pytest.raises(ValueError, match="renew_s"):
        elector(api, "x", renew_s=0.7)
    with pytest.raises(ValueError, match="identity"):
        elector(api, "")


# ---- issue 13 point 12: expiry from this replica's observation, not the holder's clock ----


def _foreign_lease(sim: SimCluster, holder: str, renew: datetime, duration_s: int = 1) -> None:
    sim.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration_s,
                "acquireTime": (renew - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "renewTime": renew.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "leaseTransitions": 2,
            },
        }
    )


async def test_a_live_holder_whose_clock_is_behind_keeps_its_lease(sim: SimCluster, api: Any) -> None:
    """The other replica renews every 200 ms but its clock is an hour behind: its renewTime always looks expired,
    yet the Lease changes, so it is alive and is not taken (client-go's observedTime)."""
    a = elector(api, "pod-a")
    async with running(a):
        for i in range(15):  # 3 s, three lease durations
            _foreign_lease(sim, "pod-skewed", datetime.now(UTC) - timedelta(hours=1) + timedelta(milliseconds=i))
            await asyncio.sleep(0.2)
            assert not a.is_leader.is_set()
        assert lease_spec(sim)["holderIdentity"] == "pod-skewed"


async def test_a_dead_holder_whose_clock_was_ahead_is_replaced(sim: SimCluster, api: Any) -> None:
    """The holder's clock ran an hour ahead and then it died: the Lease stops changing, so it is taken after one
    lease duration of this replica's time, not an hour later."""
    _foreign_lease(sim, "pod-ahead", datetime.now(UTC) + timedelta(hours=1))
    a = elector(api, "pod-a")
    async with running(a):
        started = asyncio.get_running_loop().time()
        await first_leader(a, timeout=3.0)
        assert asyncio.get_running_loop().time() - started >= 1.0  # one lease duration after it was first seen
        spec = lease_spec(sim)
        assert spec["holderIdentity"] == "pod-a" and spec["leaseTransitions"] == 3
