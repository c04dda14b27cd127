"""Never stall (issue 13 point 5) and start-up order (point 12): slow consumers, hung API calls, silent watches.

The simulated API server and the real kubernetes_asyncio client, as in test_watcher.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.kube.client import load_api_client
from bot.kube.watcher import PodWatcher, run_until_synced
from bot.model import PullFailure, Recovery
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.kube.conftest import eventually

NS = "shop"


def failing(name: str, image: str = "nginx:1.99") -> dict[str, Any]:
    return o.pod(name, NS, image, waiting={"app": ("ErrImagePull", None)})


class SlowConsumer:
    """A pipeline whose diagnosis of some pods takes until released (a registry that hangs, a slow API)."""

    def __init__(self, slow: set[str]) -> None:
        self.slow = slow
        self.release = asyncio.Event()
        self.started: list[PullFailure] = []
        self.done: list[PullFailure] = []
        self.recoveries: list[Recovery] = []
        self.concurrent = 0
        self.max_concurrent = 0

    async def on_failure(self, failure: PullFailure) -> None:
        self.started.append(failure)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if failure.pod in self.slow:
                await self.release.wait()
            self.done.append(failure)
        finally:
            self.concurrent -= 1

    async def on_recovery(self, recovery: Recovery) -> None:
        self.recoveries.append(recovery)


async def _start(api: k8s.ApiClient, settings: KubeSettings, consumer: SlowConsumer, **kwargs: Any) -> Any:
    opts: dict[str, Any] = {"backoff_base_s": 0.02, "backoff_cap_s": 0.1, "page_size": 2}
    opts.update(kwargs)
    watcher = PodWatcher(api, "test", settings, consumer.on_failure, consumer.on_recovery, **opts)
    return watcher, await asyncio.wait_for(run_until_synced(watcher), 10)


async def _stop(task: Any) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_slow_diagnosis_does_not_stop_the_watch(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """While one pod's diagnosis hangs, other failures and recoveries are still observed and delivered."""
    consumer = SlowConsumer({"stuck"})
    _, task = await _start(api, kube_settings, consumer, workers=2)
    try:
        sim.put(failing("stuck"))
        await eventually(lambda: [f.pod for f in consumer.started] == ["stuck"])
        other = sim.put(failing("other"))
        await eventually(lambda: [f.pod for f in consumer.done] == ["other"])
        sim.put(o.set_running(other, "app"))
        await eventually(lambda: [r.pod for r in consumer.recoveries] == ["other"])
        consumer.release.set()
        await eventually(lambda: sorted(f.pod for f in consumer.done) == ["other", "stuck"])
    finally:
        await _stop(task)


async def test_pool_is_bounded_and_a_busy_pod_is_coalesced(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """At most `workers` diagnoses at once; a pod whose error changes three times while it waits is delivered once
    more, with its latest error."""
    consumer = SlowConsumer({f"p{i}" for i in range(4)})
    watcher, task = await _start(api, kube_settings, consumer, workers=2)
    try:
        pods = [sim.put(failing(f"p{i}")) for i in range(4)]
        await eventually(lambda: len(consumer.started) == 2)
        waiting = next(p for p in pods if p["metadata"]["name"] not in {f.pod for f in consumer.started})
        name = waiting["metadata"]["name"]
        for detail in ("unexpected status code 401 Unauthorized", "unexpected status code 403 Forbidden", "EOF"):
            waiting = sim.put(o.set_waiting(waiting, "app", "ErrImagePull", o.pull_error("nginx:1.99", detail)))
        await eventually(lambda: watcher.observations.coalesced >= 3)
        consumer.release.set()
        await eventually(lambda: watcher.observations.pending == 0 and watcher.observations.in_flight == 0)
        assert consumer.max_concurrent == 2
        mine = [f for f in consumer.done if f.pod == name]
        assert len(mine) == 1 and mine[0].message.endswith(": EOF")
    finally:
        await _stop(task)


async def test_a_hung_list_is_abandoned_and_retried(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """A list page that never answers is given up after the API timeout and asked again."""
    sim.put(failing("early"))
    sim.faults.latency_s = 30.0
    consumer = SlowConsumer(set())
    watcher = PodWatcher(
        api, "test", kube_settings, consumer.on_failure, consumer.on_recovery, backoff_base_s=0.02, api_timeout_s=0.5
    )
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.7)
        sim.faults.latency_s = 0.0
        await asyncio.wait_for(watcher.synced.wait(), 5)
        assert [f.pod for f in consumer.done] == ["early"]
        assert watcher.restarts >= 1
    finally:
        await _stop(task)


@pytest.fixture
async def quiet_sim() -> AsyncIterator[SimCluster]:
    """A cluster whose watches send no bookmarks: a watch with no change is silent."""
    cluster = SimCluster(bookmark_interval_s=3600)
    await cluster.start()
    yield cluster
    await cluster.stop()


async def test_a_silent_watch_is_restarted_and_a_stuck_one_reported(quiet_sim: SimCluster, tmp_path: Path) -> None:
    """A watch silent past the deadline is restarted; while reconnecting hangs, stuck_streams names the streams;
    once the server answers again, nothing is stuck and changes are seen."""
    sim = quiet_sim
    settings = KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc"), context="sim", exclude_namespaces=[])
    api = await load_api_client(settings)
    async with api:
        consumer = SlowConsumer(set())
        watcher, task = await _start(api, settings, consumer, silence_s=0.5, api_timeout_s=0.5)
        try:
            await eventually(lambda: watcher.stalls >= 2, timeout=5)
            assert watcher.stuck_streams() == []
            sim.faults.latency_s = 30.0  # reconnects hang from now on
            await eventually(lambda: sorted(watcher.stuck_streams()) == ["events", "pods"], timeout=5)
            sim.faults.latency_s = 0.0
            await eventually(lambda: watcher.stuck_streams() == [], timeout=5)
            sim.put(failing("late"))
            await eventually(lambda: [f.pod for f in consumer.done] == ["late"], timeout=5)
        finally:
            await _stop(task)


async def test_events_watch_is_not_expired_by_a_long_pod_list(tmp_path: Path) -> None:
    """The events watch starts right after the events list: a pod list during which the server's watch history
    moves on (a busy cluster) does not cost an events relist (410 Gone)."""
    sim = SimCluster(bookmark_interval_s=0.2, history_limit=30)
    await sim.start()
    try:
        for i in range(12):
            sim.put(o.pod(f"good{i}", NS))
        settings = KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc"), context="sim", exclude_namespaces=[])
        api = await load_api_client(settings)
        async with api:
            sim.faults.latency_s = 0.1  # each page of the pod list takes a while

            async def churn() -> None:
                await eventually(lambda: any("/pods" in p and "continue=" in p for _, p in sim.requests))
                await asyncio.sleep(0.3)
                pod = sim.get("Pod", NS, "good0")
                assert pod is not None
                for i in range(40):  # more changes than the server keeps history for
                    pod["metadata"]["labels"] = {"n": str(i)}
                    pod = sim.put(pod)
                sim.faults.latency_s = 0.0

            churning = asyncio.create_task(churn())
            consumer = SlowConsumer(set())
            watcher, task = await _start(api, settings, consumer)
            try:
                await churning
                await eventually(lambda: sim.open_watches == 2)
                sim.put(o.event(failing("x"), "Failed", 'Failed to pull image "nginx:1.99": boom', "app"))
                await asyncio.sleep(0.5)
                event_lists = [p for m, p in sim.requests if m == "GET" and "/events" in p and "watch=" not in p]
                assert watcher.relists == 0
                assert len(event_lists) == 1
            finally:
                await _stop(task)
    finally:
        await sim.stop()
