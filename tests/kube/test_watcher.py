"""The pod watcher against the simulated API server through the real client: detection, dedup, recovery, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.kube.watcher import PodWatcher, run_until_synced
from bot.model import PullFailure, Recovery, WorkloadRef
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.kube.conftest import eventually

NS = "shop"
BAD = "nginx:1.99"


@dataclass
class Recorder:
    failures: list[PullFailure] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)

    async def on_failure(self, failure: PullFailure) -> None:
        self.failures.append(failure)

    async def on_recovery(self, recovery: Recovery) -> None:
        self.recoveries.append(recovery)


@dataclass
class Running:
    watcher: PodWatcher
    seen: Recorder
    sim: SimCluster


async def start(api: k8s.ApiClient, sim: SimCluster, settings: KubeSettings, **kwargs: Any) -> tuple[Running, Any]:
    seen = Recorder()
    opts: dict[str, Any] = {"backoff_base_s": 0.02, "backoff_cap_s": 0.1, "page_size": 2}
    opts.update(kwargs)
    watcher = PodWatcher(api, "test", settings, seen.on_failure, seen.on_recovery, **opts)
    task = await asyncio.wait_for(run_until_synced(watcher), 5)
    return Running(watcher, seen, sim), task


@pytest.fixture
async def running(api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings) -> AsyncIterator[Running]:
    run, task = await start(api, sim, kube_settings)
    yield run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def failing_pod(name: str, reason: str = "ErrImagePull", kind: str = "container", message: str | None = None) -> Any:
    good = o.container("app", "nginx:1.25")
    bad = o.container("c", BAD, pull_policy="Never" if reason == "ErrImageNeverPull" else "IfNotPresent")
    if kind == "container":
        return o.pod(name, NS, containers=[bad], waiting={"c": (reason, message)})
    if kind == "init":
        return o.pod(name, NS, containers=[good], init_containers=[bad], waiting={"c": (reason, message)})
    return o.pod(name, NS, containers=[good], ephemeral_containers=[bad], waiting={"c": (reason, message)})


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"])
async def test_each_waiting_reason_is_reported(running: Running, reason: str) -> None:
    """Every pull waiting reason gives one PullFailure with kubelet's message."""
    pod = running.sim.put(failing_pod("p", reason))
    await eventually(lambda: running.seen.failures)
    (failure,) = running.seen.failures
    assert failure.waiting_reason == reason
    assert failure.message == pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert (failure.namespace, failure.pod, failure.container, failure.image) == (NS, "p", "c", BAD)
    assert failure.pod_uid == pod["metadata"]["uid"]
    assert failure.workload == WorkloadRef("Pod", "p")
    assert failure.node == "node-1"
    assert failure.cluster == "test"


@pytest.mark.parametrize("kind", ["container", "init", "ephemeral"])
async def test_all_container_kinds(running: Running, kind: str) -> None:
    """Init and ephemeral containers are watched like regular ones."""
    running.sim.put(failing_pod("p", "ErrImagePull", kind))
    await eventually(lambda: running.seen.failures)
    assert [(f.container, f.container_kind) for f in running.seen.failures] == [("c", kind)]


async def test_failures_present_before_start_are_reported_at_sync(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """The first (paginated) list reports failing pods once synced is set; healthy pods are not remembered."""
    for i in range(3):
        sim.put(failing_pod(f"bad{i}"))
        sim.put(o.pod(f"good{i}", NS))
    run, task = await start(api, sim, kube_settings)
    try:
        assert sorted(f.pod for f in run.seen.failures) == ["bad0", "bad1", "bad2"]
        assert run.watcher.failing_pods == 3
    finally:
        task.cancel()


async def test_owner_chains(running: Running) -> None:
    """Deployment (via its ReplicaSet), CronJob (via its Job), StatefulSet, DaemonSet and an orphan ReplicaSet."""
    sim = running.sim
    deploy, rs, pods = o.deployment_with_pods("web", NS, BAD, waiting_reason="ErrImagePull")
    for obj in (deploy, rs, *pods):
        sim.put(obj)
    cj = sim.put(o.cronjob("nightly", NS, BAD))
    job = sim.put(o.job("x", NS, BAD, owner=cj))
    sim.put(o.pod_for(job, waiting={"nightly": ("ErrImagePull", None)}))
    sts = sim.put(o.statefulset("db", NS, BAD))
    sim.put(o.pod_for(sts, waiting={"db": ("ErrImagePull", None)}))
    ds = sim.put(o.daemonset("agent", NS, BAD))
    sim.put(o.pod_for(ds, waiting={"agent": ("ErrImagePull", None)}))
    lonely_deploy = o.deployment("gone", NS, BAD)  # never stored: the ReplicaSet's owner is unknown
    lonely_rs = o.replicaset(lonely_deploy)
    lonely_rs["metadata"].pop("ownerReferences")
    sim.put(lonely_rs)
    sim.put(o.pod_for(lonely_rs, waiting={"gone": ("ErrImagePull", None)}))
    await eventually(lambda: len(running.seen.failures) == 5)
    assert {f.workload for f in running.seen.failures} == {
        WorkloadRef("Deployment", "web"),
        WorkloadRef("CronJob", "nightly"),
        WorkloadRef("StatefulSet", "db"),
        WorkloadRef("DaemonSet", "agent"),
        WorkloadRef("ReplicaSet", lonely_rs["metadata"]["name"]),
    }


async def test_repeated_modified_events_are_not_reported_again(running: Running) -> None:
    """Label changes and ErrImagePull/ImagePullBackOff flips with the same error are one report."""
    sim = running.sim
    pod = sim.put(failing_pod("p", "ErrImagePull"))
    await eventually(lambda: running.seen.failures)
    for i in range(3):
        pod["metadata"]["labels"] = {"n": str(i)}
        pod = sim.put(pod)
    sim.put(o.failed_pull_event(pod, "c"))
    sim.put(o.set_waiting(pod, "c", "ImagePullBackOff"))
    sim.put(o.set_waiting(pod, "c", "ErrImagePull"))
    marker = sim.put(failing_pod("marker"))
    await eventually(lambda: any(f.pod == "marker" for f in running.seen.failures))
    assert [f.pod for f in running.seen.failures] == ["p", "marker"]
    assert marker["metadata"]["name"] == "marker"


async def test_backoff_message_is_replaced_by_failed_event(running: Running) -> None:
    """ImagePullBackOff says only 'Back-off pulling image'; the Failed event's text is reported (fresher)."""
    sim = running.sim
    pod = sim.put(failing_pod("p", "ImagePullBackOff"))
    await eventually(lambda: running.seen.failures)
    assert running.seen.failures[0].message == f'Back-off pulling image "{BAD}"'
    assert running.seen.failures[0].event_reason is None
    for event in o.pull_events(pod, "c", error=o.pull_error(BAD, "unexpected status code 401 Unauthorized")):
        sim.put(event)
    await eventually(lambda: len(running.seen.failures) == 2)
    update = running.seen.failures[1]
    assert update.event_reason == "Failed"
    assert update.message.startswith(f'Failed to pull image "{BAD}": failed to pull and unpack image')
    assert update.message.endswith("401 Unauthorized")


async def test_missing_pull_secret_event_is_used_for_backoff(running: Running) -> None:
    """A pod-level FailedToRetrieveImagePullSecret event explains a bare back-off."""
    sim = running.sim
    pod = failing_pod("p", "ImagePullBackOff")
    sim.put(o.missing_pull_secret_event(pod, ["regcred"]))
    sim.put(pod)
    # The two streams are independent: the pod may be seen before the event, then reported again with its text.
    await eventually(lambda: running.seen.failures and running.seen.failures[-1].event_reason is not None)
    assert running.seen.failures[-1].event_reason == "FailedToRetrieveImagePullSecret"
    assert "(regcred)" in running.seen.failures[-1].message
    assert len(running.seen.failures) <= 2


async def test_recoveries_started_deleted_and_image_changed(running: Running) -> None:
    """A container that starts, a deleted pod and an image change are each one Recovery."""
    sim = running.sim
    a = sim.put(failing_pod("a"))
    sim.put(failing_pod("b"))
    c = sim.put(failing_pod("c", kind="init"))
    await eventually(lambda: len(running.seen.failures) == 3)
    sim.put(o.set_running(a, "c"))
    sim.delete("Pod", NS, "b")
    sim.put(o.set_image(c, "c", "nginx:1.27"))
    await eventually(lambda: len(running.seen.recoveries) == 3)
    assert {(r.pod, r.reason) for r in running.seen.recoveries} == {
        ("a", "started"),
        ("b", "pod_deleted"),
        ("c", "image_changed"),
    }
    assert {r.image for r in running.seen.recoveries} == {BAD}
    assert running.watcher.failing_pods == 0


async def test_healthy_pods_leave_nothing_behind(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """Listed in pages and watched, healthy pods are remembered by nobody; a healthy pod that starts failing is
    reported, one that changes but stays healthy is not, and one that fails, recovers or is deleted moves in and out
    of what the watcher holds. A relist after 410 reports only the recovery of the failing pod deleted in the gap."""
    for i in range(12):
        sim.put(o.set_running(o.pod(f"ok-{i}", NS), "app"))
    sim.put(failing_pod("bad-0"))
    run, task = await start(api, sim, kube_settings, page_size=5)
    try:
        seen, watcher = run.seen, run.watcher
        assert [f.pod for f in seen.failures] == ["bad-0"] and watcher.failing_pods == 1
        relabelled = sim.get("Pod", NS, "ok-1")
        assert relabelled is not None
        relabelled["metadata"]["labels"] = {"tier": "web"}  # a new resourceVersion, still healthy
        sim.put(relabelled)
        turned = sim.get("Pod", NS, "ok-2")
        assert turned is not None
        sim.put(o.set_waiting(turned, "app", "ErrImagePull"))
        await eventually(lambda: len(seen.failures) == 2)
        assert seen.failures[-1].pod == "ok-2" and watcher.failing_pods == 2
        back = sim.get("Pod", NS, "ok-2")
        assert back is not None
        sim.put(o.set_running(back, "app"))
        await eventually(lambda: len(seen.recoveries) == 1)
        assert (seen.recoveries[0].pod, seen.recoveries[0].reason) == ("ok-2", "started")
        assert watcher.failing_pods == 1
        sim.delete("Pod", NS, "ok-3")  # healthy: nothing to tell
        sim.faults.drop_watches()
        sim.delete("Pod", NS, "bad-0")
        sim.faults.expire_history()
        await eventually(lambda: len(seen.recoveries) == 2)
        assert (seen.recoveries[1].pod, seen.recoveries[1].reason) == ("bad-0", "pod_deleted")
        await eventually(lambda: watcher.relists >= 1)
        assert watcher.failing_pods == 0 and len(seen.failures) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_survives_dropped_watches(running: Running) -> None:
    """After the server drops every watch, the watcher reconnects from its resourceVersion and sees new changes."""
    sim = running.sim
    await eventually(lambda: sim.open_watches == 2)
    sim.faults.drop_watches()
    sim.put(failing_pod("late"))
    await eventually(lambda: running.seen.failures)
    assert running.seen.failures[0].pod == "late"
    assert running.watcher.restarts >= 2
    assert running.watcher.relists == 0


async def test_410_relists_and_reports_gap_recoveries_once(running: Running) -> None:
    """Changes made while disconnected, with history expired, are reconciled: each recovery once, no repeat failure."""
    sim = running.sim
    a = sim.put(failing_pod("a"))
    sim.put(failing_pod("b"))
    sim.put(failing_pod("still"))
    await eventually(lambda: len(running.seen.failures) == 3)
    await eventually(lambda: sim.open_watches == 2)
    sim.faults.fail_next(3, 500, path_prefix="/api/v1/pods")
    sim.faults.drop_watches()
    sim.put(o.set_running(a, "c"))
    sim.delete("Pod", NS, "b")
    sim.put(failing_pod("new"))
    sim.faults.expire_history()
    await eventually(lambda: len(running.seen.recoveries) == 2 and len(running.seen.failures) == 4)
    await eventually(lambda: sim.open_watches == 2)
    await asyncio.sleep(0.3)
    assert sorted((r.pod, r.reason) for r in running.seen.recoveries) == [("a", "started"), ("b", "pod_deleted")]
    assert [f.pod for f in running.seen.failures] == ["a", "b", "still", "new"]
    assert running.watcher.relists >= 1


async def test_backs_off_on_500_and_429_then_recovers(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """Errors on the first list and on reconnects (500, 429 with Retry-After) delay but do not stop the watcher."""
    sim.put(failing_pod("early"))
    sim.faults.fail_next(2, 500, path_prefix="/api/v1/pods")
    sim.faults.fail_next(1, 429, path_prefix="/api/v1/events", retry_after=1)
    run, task = await start(api, sim, kube_settings)
    try:
        assert [f.pod for f in run.seen.failures] == ["early"]
        assert run.watcher.restarts >= 3
        await eventually(lambda: sim.open_watches == 2)
        sim.faults.fail_next(4, 500, path_prefix="/api/v1/pods")
        sim.faults.drop_watches()
        sim.put(failing_pod("later"))
        await eventually(lambda: len(run.seen.failures) == 2)
        assert sim.faults.injected == 7
    finally:
        task.cancel()


async def test_namespace_filters(api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings) -> None:
    """include_namespaces and exclude_namespaces decide which pods are reported."""
    settings = kube_settings.model_copy(update={"include_namespaces": [NS, "other"], "exclude_namespaces": ["other"]})
    run, task = await start(api, sim, settings)
    try:
        for ns in ("other", "kube-system", NS):
            pod = failing_pod("p")
            pod["metadata"]["namespace"] = ns
            sim.put(pod)
        await eventually(lambda: run.seen.failures)
        await asyncio.sleep(0.2)
        assert [f.namespace for f in run.seen.failures] == [NS]
    finally:
        task.cancel()
