"""What real kubelets write, against the watcher (simulated API server, real kubernetes_asyncio client).

Each test here failed before the bot learned the behaviour it names (docs/KUBERNETES.md).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.diagnosis.classify import classify
from bot.kube import podstate
from bot.model import Cause
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.kube import kubelet_texts as t
from tests.kube.conftest import eventually
from tests.kube.test_watcher import Running, start

NS = "shop"


@pytest.fixture
async def watching(api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings) -> AsyncIterator[Running]:
    run, task = await start(api, sim, kube_settings)
    yield run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle(run: Running) -> None:
    """Put a marker failure and wait for it: every change made before it has been seen."""
    marker = o.pod(f"marker-{len(run.seen.failures)}", NS, "nginx:1.99", waiting={"app": ("ErrImagePull", None)})
    run.sim.put(marker)
    await eventually(lambda: any(f.pod == marker["metadata"]["name"] for f in run.seen.failures))


def failures_of(run: Running, pod: str) -> list[Any]:
    return [f for f in run.seen.failures if f.pod == pod]


def ran_before(pod: dict[str, Any], name: str, status_image: str, restarts: int = 3) -> dict[str, Any]:
    """The pod's container status as kubelet writes it for a container that ran before: the runtime's image name,
    a containerID and lastState.terminated stay; only `state` is replaced (kubelet_pods.go)."""
    new = copy.deepcopy(pod)
    for st in new["status"]["containerStatuses"]:
        if st["name"] == name:
            st["image"] = status_image
            st["containerID"] = "containerd://" + "ab" * 32
            st["restartCount"] = restarts
            st["lastState"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": "2026-11-30T01:00:00Z",
                    "finishedAt": "2026-11-30T02:00:00Z",
                    "containerID": "containerd://" + "ab" * 32,
                }
            }
    return new


# ---- point 2: kubelet >= 1.32 back-off text carries the last error ----


async def test_132_backoff_with_same_error_is_not_a_new_failure(watching: Running) -> None:
    """ErrImagePull, then the 1.32 back-off carrying the same error, then ErrImagePull again: one failure."""
    sim = watching.sim
    pod = sim.put(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)}))
    await eventually(lambda: failures_of(watching, "p"))
    for _ in range(2):
        pod = sim.put(o.set_waiting(pod, "app", "ImagePullBackOff", t.GHCR_BACKOFF_132))
        pod = sim.put(o.set_waiting(pod, "app", "ErrImagePull", t.GHCR_ERR_IMAGE_PULL))
    await settle(watching)
    assert len(failures_of(watching, "p")) == 1


async def test_132_backoff_reports_and_classifies_the_error_it_carries(watching: Running) -> None:
    """A pod first seen backing off (bot restarted, no event left) is reported with the carried error."""
    watching.sim.put(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ImagePullBackOff", t.GHCR_BACKOFF_132)}))
    await eventually(lambda: failures_of(watching, "p"))
    (failure,) = failures_of(watching, "p")
    assert failure.waiting_reason == "ImagePullBackOff"
    assert failure.message == t.GHCR_NOT_FOUND
    assert classify(failure.message, failure.event_reason, failure.waiting_reason).cause is Cause.TAG_NOT_FOUND
    assert podstate.carried_error(t.GHCR_BACKOFF_132) == ("ErrImagePull", t.GHCR_NOT_FOUND)
    assert podstate.carried_error(t.GHCR_BACKOFF_OLD) is None
    assert podstate.error_text(t.GHCR_BACKOFF_132) == podstate.error_text(t.GHCR_FAILED_EVENT)


# ---- point 1: re-pulls after a restart and in-place image changes ----


async def test_restart_repull_of_untagged_image_is_reported(watching: Running) -> None:
    """Spec `nginx` (pull Always), status `docker.io/library/nginx:latest` from the runtime: the rate-limited re-pull
    after a restart is a failure of `nginx`."""
    pod = o.pod("p", NS, containers=[o.container("app", "nginx", pull_policy="Always")])
    pod = o.set_waiting(pod, "app", "ErrImagePull", t.HUB_RATE_LIMITED)
    watching.sim.put(ran_before(pod, "app", "docker.io/library/nginx:latest"))
    await eventually(lambda: failures_of(watching, "p"))
    (failure,) = failures_of(watching, "p")
    assert (failure.image, failure.message) == ("nginx", t.HUB_RATE_LIMITED)
    assert classify(failure.message, None, failure.waiting_reason).cause is Cause.RATE_LIMITED


async def test_in_place_image_change_is_a_failure_of_the_new_image(watching: Running) -> None:
    """A running container whose spec image is changed in place to a missing tag: kubelet keeps the old runtime image
    in status.image and waits on the pull of the new one. That is a failure of the new image."""
    sim = watching.sim
    pod = sim.put(o.pod("p", NS, "ghcr.io/alexsjones/sympozium/node-probe:v0.1.7", containers=None))
    changed = o.set_image(pod, "app", t.GHCR_IMAGE)
    changed = o.set_waiting(changed, "app", "ErrImagePull", t.GHCR_ERR_IMAGE_PULL)
    sim.put(ran_before(changed, "app", "ghcr.io/alexsjones/sympozium/node-probe:v0.1.7", restarts=0))
    await eventually(lambda: failures_of(watching, "p"))
    (failure,) = failures_of(watching, "p")
    assert failure.image == t.GHCR_IMAGE


def test_stale_wait_of_the_old_image_is_still_skipped() -> None:
    """Right after a spec change and before kubelet acts, a wait that names the old image is not the new one's."""
    pod = o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)})
    assert podstate.pull_waits(o.set_image(pod, "app", "nginx:1.27")) == []
    old = o.pod("q", NS, t.GHCR_IMAGE, waiting={"app": ("ImagePullBackOff", t.GHCR_BACKOFF_132)})
    assert podstate.pull_waits(ran_before(o.set_image(old, "app", "nginx:1.27"), "app", t.GHCR_IMAGE)) == []


# ---- point 3: combined and expired events ----


async def test_combined_failed_event_explains_a_bare_backoff(watching: Running) -> None:
    """client-go's `(combined from similar events): Failed to pull image …` is a pull error event like any other."""
    sim = watching.sim
    pod = sim.put(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ImagePullBackOff", t.GHCR_BACKOFF_OLD)}))
    await eventually(lambda: failures_of(watching, "p"))
    event = o.event(pod, "Failed", t.GHCR_FAILED_EVENT_COMBINED, "app", count=4)
    sim.put(event)
    await eventually(lambda: len(failures_of(watching, "p")) == 2)
    update = failures_of(watching, "p")[1]
    assert (update.event_reason, update.message) == ("Failed", t.GHCR_FAILED_EVENT)
    assert classify(update.message, update.event_reason, update.waiting_reason).cause is Cause.TAG_NOT_FOUND


async def test_expired_event_is_not_needed(api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings) -> None:
    """The Failed event expired (1 h TTL) before the bot started: the pod status message is used, and a later
    back-off with the same error is not a new failure."""
    pod = sim.put(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)}))
    event = sim.put(o.event(pod, "Failed", t.GHCR_FAILED_EVENT, "app"))
    sim.delete("Event", NS, event["metadata"]["name"])
    run, task = await start(api, sim, kube_settings)
    try:
        (failure,) = failures_of(run, "p")
        assert (failure.message, failure.event_reason) == (t.GHCR_ERR_IMAGE_PULL, None)
        sim.put(o.set_waiting(pod, "app", "ImagePullBackOff", t.GHCR_BACKOFF_OLD))
        await settle(run)
        assert len(failures_of(run, "p")) == 1
    finally:
        task.cancel()


# ---- point 8: every pull waiting reason ----


@pytest.mark.parametrize(
    ("reason", "image", "message", "cause"),
    [
        ("RegistryUnavailable", t.REGISTRY_UNAVAILABLE_IMAGE, t.REGISTRY_UNAVAILABLE, None),
        ("SignatureValidationFailed", t.UNSIGNED_IMAGE, t.SIGNATURE_FAILED, Cause.SIGNATURE_OR_POLICY),
        ("ImageInspectError", t.INSPECT_IMAGE, t.INSPECT_FAILED, None),
    ],
)
async def test_other_pull_reasons_are_failures(
    watching: Running, reason: str, image: str, message: str, cause: Cause | None
) -> None:
    """RegistryUnavailable, SignatureValidationFailed and ImageInspectError are pull failures like ErrImagePull."""
    watching.sim.put(o.pod("p", NS, image, waiting={"app": (reason, message)}))
    await eventually(lambda: failures_of(watching, "p"))
    (failure,) = failures_of(watching, "p")
    assert (failure.waiting_reason, failure.message, failure.image) == (reason, message, image)
    if cause is not None:
        assert classify(failure.message, None, failure.waiting_reason).cause is cause


async def test_registry_unavailable_backoff_flip_is_not_a_new_failure(watching: Running) -> None:
    """RegistryUnavailable alternates with a back-off that carries it: one failure."""
    sim = watching.sim
    image = t.REGISTRY_UNAVAILABLE_IMAGE
    pod = sim.put(o.pod("p", NS, image, waiting={"app": ("RegistryUnavailable", t.REGISTRY_UNAVAILABLE)}))
    await eventually(lambda: failures_of(watching, "p"))
    pod = sim.put(o.set_waiting(pod, "app", "ImagePullBackOff", t.REGISTRY_UNAVAILABLE_BACKOFF))
    sim.put(o.set_waiting(pod, "app", "RegistryUnavailable", t.REGISTRY_UNAVAILABLE))
    await settle(watching)
    assert len(failures_of(watching, "p")) == 1


# ---- point 6: Terminating pods ----


def terminating(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server shows it after a graceful delete: deletionTimestamp and grace period set; kubelet
    has not stopped it yet (on a lost node it never will), so its status still says what it said."""
    new = copy.deepcopy(pod)
    new["metadata"]["deletionTimestamp"] = "2026-11-30T03:00:00Z"
    new["metadata"]["deletionGracePeriodSeconds"] = 30
    return new


async def test_terminating_pod_is_leaving_not_failing(watching: Running) -> None:
    """A failing pod that turns Terminating is one Recovery (pod_terminating); its kubelet retries while it
    terminates are no new failures."""
    sim = watching.sim
    pod = sim.put(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)}))
    await eventually(lambda: failures_of(watching, "p"))
    pod = sim.put(terminating(pod))
    await eventually(lambda: watching.seen.recoveries)
    sim.put(o.set_waiting(pod, "app", "ImagePullBackOff", t.GHCR_BACKOFF_OLD))
    await settle(watching)
    assert [(r.pod, r.reason) for r in watching.seen.recoveries] == [("p", "pod_terminating")]
    assert len(failures_of(watching, "p")) == 1
    assert watching.watcher.failing_pods == 1  # only the marker


async def test_terminating_pod_at_start_is_not_reported(
    api: k8s.ApiClient, sim: SimCluster, kube_settings: KubeSettings
) -> None:
    """A pod stuck Terminating on a lost node, still showing its pull error, is not a failure at start-up."""
    sim.put(terminating(o.pod("p", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)})))
    run, task = await start(api, sim, kube_settings)
    try:
        await settle(run)
        assert failures_of(run, "p") == []
    finally:
        task.cancel()


async def test_objects_of_unexpected_shape_do_not_stop_the_watch(watching: Running) -> None:
    """A pod whose status has an unexpected shape is skipped (logged); later pods are still seen."""
    sim = watching.sim
    odd = o.pod("odd", NS, t.GHCR_IMAGE, waiting={"app": ("ErrImagePull", t.GHCR_ERR_IMAGE_PULL)})
    odd["status"]["containerStatuses"][0]["restartCount"] = "many"
    odd["status"]["containerStatuses"][0]["lastState"] = "gone"
    odd["status"]["initContainerStatuses"] = ["not-an-object"]
    sim.put(odd)
    await settle(watching)
    assert watching.watcher.failing_pods >= 1
