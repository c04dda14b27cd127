"""The simulator's deletion is not instant (issue 13, point 6): DeleteOptions, graceful pod deletion, Terminating.

As kube-apiserver: a uid or resourceVersion precondition that does not match is 409 Conflict (apiserver
`storage/interfaces.go` Preconditions.Check); a scheduled pod gets `metadata.deletionTimestamp` and
`deletionGracePeriodSeconds` (its terminationGracePeriodSeconds, or the request's gracePeriodSeconds; pod
`strategy.go` CheckGracefulDelete) and stays, Terminating, until its kubelet confirms or the grace period ends; a
second delete may only shorten it (`rest/delete.go` BeforeDelete); gracePeriodSeconds=0 removes it at once; on a lost
node it stays Terminating for ever.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


def controlled(sim: SimCluster, node: str | None = "node-1") -> str:
    deploy, rs, pods = o.deployment_with_pods("web", "shop")
    pods[0]["spec"]["nodeName"] = node
    if node is None:
        del pods[0]["spec"]["nodeName"]
    for obj in (deploy, rs, *pods):
        sim.put(obj)
    return str(pods[0]["metadata"]["name"])


async def test_uid_precondition_mismatch_is_409(sim: SimCluster, api: k8s.ApiClient) -> None:
    """preconditions.uid that is not the object's: 409 Conflict naming both uids; nothing is deleted."""
    name = controlled(sim)
    with pytest.raises(k8s.ApiException) as err:
        await k8s.CoreV1Api(api).delete_namespaced_pod(name, "shop", body={"preconditions": {"uid": "not-it"}})
    assert err.value.status == 409
    status = json.loads(err.value.body)
    assert status["reason"] == "Conflict"
    assert "Precondition failed: UID in precondition: not-it, UID in object meta: " in status["message"]
    assert sim.get("Pod", "shop", name) is not None and not sim.terminating("shop", name)


async def test_delete_leaves_a_terminating_pod_for_its_grace_period(sim: SimCluster, api: k8s.ApiClient) -> None:
    """A scheduled pod is not gone after DELETE: deletionTimestamp, MODIFIED on the watch, replacement made."""
    core = k8s.CoreV1Api(api)
    name = controlled(sim)
    uid = sim.get("Pod", "shop", name)["metadata"]["uid"]  # type: ignore[index]
    rv = str(sim.resource_version)
    answer = await core.delete_namespaced_pod(name, "shop", body={"preconditions": {"uid": uid}})
    assert answer.metadata.deletion_timestamp is not None
    assert answer.metadata.deletion_grace_period_seconds == 30  # the pod's terminationGracePeriodSeconds
    assert sim.terminating("shop", name)
    assert len(sim.list("Pod", "shop")) == 2  # the ReplicaSet does not count a terminating pod
    seen = []
    async for event in watch.Watch().stream(core.list_namespaced_pod, "shop", resource_version=rv, timeout_seconds=1):
        seen.append((event["type"], event["raw_object"]["metadata"]["name"]))
    assert seen[0] == ("MODIFIED", name)
    # A second delete with a longer grace period changes nothing; a shorter one shortens it.
    again = await core.delete_namespaced_pod(name, "shop", grace_period_seconds=60)
    assert again.metadata.deletion_grace_period_seconds == 30
    await core.delete_namespaced_pod(name, "shop", grace_period_seconds=0)
    assert sim.get("Pod", "shop", name) is None
    assert len(sim.list("Pod", "shop")) == 1  # no second replacement


async def test_grace_period_ends_by_itself() -> None:
    """Without a kubelet confirmation, the pod goes when its grace period ends."""
    sim = SimCluster()
    await sim.start()
    try:
        name = controlled(sim)
        pod = sim.get("Pod", "shop", name)
        assert pod is not None
        sim.delete("Pod", "shop", name, grace_period_s=1)
        assert sim.terminating("shop", name)
        await asyncio.sleep(1.3)
        assert sim.get("Pod", "shop", name) is None
    finally:
        await sim.stop()


async def test_unscheduled_pod_goes_at_once_and_lost_node_never(sim: SimCluster, api: k8s.ApiClient) -> None:
    """A pod without a node is deleted immediately; a pod on a lost node stays Terminating."""
    core = k8s.CoreV1Api(api)
    sim.put(o.pod("pending", "shop", node_name=None))
    await core.delete_namespaced_pod("pending", "shop")
    assert sim.get("Pod", "shop", "pending") is None
    sim.lost_nodes.add("node-9")
    sim.put(o.pod("stuck", "shop", node_name="node-9"))
    await core.delete_namespaced_pod("stuck", "shop", grace_period_seconds=1)
    await asyncio.sleep(1.3)
    assert sim.terminating("shop", "stuck")


async def test_dry_run_delete_changes_nothing(sim: SimCluster, api: k8s.ApiClient) -> None:
    """dryRun=All answers the Terminating pod it would make, and leaves it as it was."""
    name = controlled(sim)
    rv = sim.resource_version
    dry = await k8s.CoreV1Api(api).delete_namespaced_pod(name, "shop", dry_run="All")
    assert dry.metadata.deletion_timestamp is not None
    assert sim.resource_version == rv and not sim.terminating("shop", name)
