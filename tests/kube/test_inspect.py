"""Inspection of a failing pod against the simulated API server, through the real kubernetes_asyncio client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.kube.dockerconfig import fingerprint
from bot.kube.inspect import PROBLEM_FORBIDDEN, PROBLEM_NOT_ALLOWED, Inspector
from bot.model import SecretCheck, WorkloadRef
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster

NS = "shop"
IMAGE = "registry.example:5000/shop/web:1.2"
PASSWORD = "Hunter2-never-shown"


def by_name(checks: tuple[SecretCheck, ...]) -> dict[str, SecretCheck]:
    return {c.name: c for c in checks}


def deployment_pod(sim: SimCluster, **pod_kwargs: Any) -> dict[str, Any]:
    deploy = o.deployment("web", NS, IMAGE)
    rs = o.replicaset(deploy)
    pod = o.pod_for(rs, waiting={"web": ("ImagePullBackOff", None)}, **pod_kwargs)
    for obj in (deploy, rs, pod):
        sim.put(obj)
    return pod


async def test_deployment_pod_with_pod_and_serviceaccount_secrets(sim: SimCluster, api: Any) -> None:
    """A Deployment pod: owner chain to the Deployment, secrets from pod and SA checked, credentials from the pod's."""
    sim.put(o.node("node-a", arch="arm64"))
    sim.put(
        o.docker_config_secret("pod-creds", NS, {"registry.example:5000": {"username": "bot", "password": PASSWORD}})
    )
    sim.put(o.docker_config_secret("sa-creds", NS, {"registry.example:5000": {"username": "sa", "password": "x"}}))
    sim.put(o.docker_config_secret("hub", NS, {"https://index.docker.io/v1/": {"username": "h", "password": "y"}}))
    sim.put(o.service_account("builder", NS, ["sa-creds", "hub", "pod-creds"]))
    pod = deployment_pod(sim, image_pull_secrets=["pod-creds"], service_account_name="builder", node_name="node-a")

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert inspection.exists
    assert inspection.controlled
    assert inspection.owner_chain[0].kind == "ReplicaSet"
    assert inspection.owner_chain[1] == WorkloadRef("Deployment", "web")
    assert inspection.service_account == "builder"
    assert inspection.image_pull_policy == "IfNotPresent"
    assert inspection.node is not None and inspection.node.architecture == "arm64" and inspection.node.os == "linux"
    assert not inspection.node.disk_pressure
    checks = by_name(inspection.secrets)
    assert [c.name for c in inspection.secrets] == ["pod-creds", "sa-creds", "hub"]  # duplicates read once
    assert checks["pod-creds"].referenced_by == "pod"
    assert checks["sa-creds"].referenced_by == "serviceaccount"
    assert checks["pod-creds"].matches_image and checks["sa-creds"].matches_image
    assert checks["hub"].registries == ("docker.io",) and not checks["hub"].matches_image
    assert checks["pod-creds"].fingerprint == fingerprint("registry.example:5000", "bot", PASSWORD)
    assert checks["pod-creds"].created_at is not None
    assert checks["pod-creds"].type == "kubernetes.io/dockerconfigjson" and checks["pod-creds"].parses
    assert creds is not None and creds.username == "bot" and creds.password == PASSWORD
    assert PASSWORD not in repr(inspection)


async def test_missing_wrong_registry_malformed_and_legacy_secrets(sim: SimCluster, api: Any) -> None:
    """Each kind of broken secret is told apart; credentials come from the first secret that matches."""
    sim.put(o.docker_config_secret("wrong-reg", NS, {"ghcr.io": {"username": "u", "password": "p"}}))
    sim.put(o.docker_config_secret("broken", NS, raw='{"auths": {"registry.example:5000": {"auth": "' + PASSWORD))
    sim.put(o.opaque_secret("opaque", NS, {"password": PASSWORD}))
    sim.put(
        o.docker_config_secret(
            "legacy", NS, {"registry.example:5000": {"username": "old", "password": "p"}}, legacy=True
        )
    )
    pod = deployment_pod(sim, image_pull_secrets=["gone", "wrong-reg", "broken", "opaque", "legacy"])

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    checks = by_name(inspection.secrets)
    assert not checks["gone"].exists and checks["gone"].referenced_by == "pod"
    assert checks["wrong-reg"].parses and checks["wrong-reg"].registries == ("ghcr.io",)
    assert not checks["wrong-reg"].matches_image
    assert not checks["broken"].parses and checks["broken"].problem is not None
    assert "not valid JSON" in checks["broken"].problem
    assert checks["opaque"].type == "Opaque" and not checks["opaque"].parses
    assert checks["legacy"].type == "kubernetes.io/dockercfg"
    assert checks["legacy"].parses and checks["legacy"].matches_image
    for check in inspection.secrets:
        assert PASSWORD not in (check.problem or "")
    assert creds is not None and creds.username == "old"


async def test_forbidden_secret_read_degrades_to_a_check(sim: SimCluster, api: Any) -> None:
    """RBAC refusing a secret gives a check that says so; the rest of the inspection goes on."""
    sim.put(o.docker_config_secret("hidden", NS, {"registry.example:5000": {"username": "u", "password": "p"}}))
    pod = deployment_pod(sim, image_pull_secrets=["hidden"])
    sim.faults.fail_next(5, status=403, path_prefix=f"/api/v1/namespaces/{NS}/secrets/")

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    (check,) = inspection.secrets
    assert check.exists and not check.parses
    assert check.problem == PROBLEM_FORBIDDEN
    assert creds is None
    assert inspection.controlled and inspection.owner_chain


async def test_secret_namespaces_limit_reads(sim: SimCluster, api: Any) -> None:
    """Outside the allowed namespaces, secrets are listed but not read."""
    sim.put(o.docker_config_secret("creds", NS, {"registry.example:5000": {"username": "u", "password": "p"}}))
    pod = deployment_pod(sim, image_pull_secrets=["creds"])

    inspection, creds = await Inspector(api, secret_namespaces=["other"]).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert inspection.secrets[0].problem == PROBLEM_NOT_ALLOWED
    assert creds is None
    assert not any("/secrets/" in path for _, path in sim.requests)


async def test_node_disk_pressure(sim: SimCluster, api: Any) -> None:
    """A node under DiskPressure is reported with its architecture."""
    sim.put(o.node("node-full", arch="amd64", disk_pressure=True))
    pod = deployment_pod(sim, node_name="node-full")

    inspection, _ = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert inspection.node is not None
    assert inspection.node.name == "node-full" and inspection.node.disk_pressure
    assert inspection.node.architecture == "amd64"


async def test_missing_node_and_unscheduled_pod(sim: SimCluster, api: Any) -> None:
    """A node that cannot be read leaves a bare NodeInfo; an unscheduled pod has no node."""
    pod = deployment_pod(sim, node_name="node-gone")
    inspection, _ = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)
    assert inspection.node is not None and inspection.node.name == "node-gone"
    assert inspection.node.architecture is None

    bare = o.pod("pending", NS, IMAGE, node_name=None)
    sim.put(bare)
    inspection, _ = await Inspector(api).inspect(NS, "pending", IMAGE)
    assert inspection.node is None


async def test_bare_pod_is_not_controlled(sim: SimCluster, api: Any) -> None:
    """A pod with no owner has an empty chain and is not controlled; the SA defaults to "default"."""
    sim.put(o.pod("lonely", NS, IMAGE, service_account_name=""))
    sim.put(o.service_account("default", NS, ["missing-sa-secret"]))

    inspection, creds = await Inspector(api).inspect(NS, "lonely", IMAGE)

    assert inspection.exists and not inspection.controlled
    assert inspection.owner_chain == ()
    assert inspection.service_account == "default"
    assert inspection.secrets == (SecretCheck(name="missing-sa-secret", referenced_by="serviceaccount", exists=False),)
    assert creds is None


async def test_cronjob_and_statefulset_chains(sim: SimCluster, api: Any) -> None:
    """Pod -> Job -> CronJob and Pod -> StatefulSet chains resolve to the top workload."""
    cj = o.cronjob("nightly", NS, IMAGE)
    job = o.job("ignored", NS, IMAGE, owner=cj)
    job_pod = o.pod_for(job)
    sts = o.statefulset("db", NS, IMAGE)
    sts_pod = o.pod_for(sts)
    for obj in (cj, job, job_pod, sts, sts_pod):
        sim.put(obj)
    inspector = Inspector(api)

    job_inspection, _ = await inspector.inspect(NS, job_pod["metadata"]["name"], IMAGE)
    sts_inspection, _ = await inspector.inspect(NS, sts_pod["metadata"]["name"], IMAGE)

    assert job_inspection.owner_chain == (
        WorkloadRef("Job", job["metadata"]["name"]),
        WorkloadRef("CronJob", "nightly"),
    )
    assert sts_inspection.owner_chain == (WorkloadRef("StatefulSet", "db"),)
    assert sts_inspection.controlled


async def test_owner_cache_reads_each_owner_once(sim: SimCluster, api: Any) -> None:
    """Pods of one Deployment share the owner reads thanks to the TTL cache."""
    deploy, rs, pods = o.deployment_with_pods("web", NS, IMAGE, replicas=3, waiting_reason="ErrImagePull")
    for obj in (deploy, rs, *pods):
        sim.put(obj)
    inspector = Inspector(api)
    for pod in pods:
        inspection, _ = await inspector.inspect(NS, pod["metadata"]["name"], IMAGE)
        assert inspection.owner_chain[-1] == WorkloadRef("Deployment", "web")
    assert inspector.owners.reads == 2  # the ReplicaSet and the Deployment, once each


async def test_events_newest_first_and_limited(sim: SimCluster, api: Any) -> None:
    """Events of the pod (not of others) come as "Reason: message" lines, newest first, limited."""
    pod = deployment_pod(sim)
    other = o.pod("other", NS, IMAGE)
    sim.put(other)
    for event in o.pull_events(pod, "web"):
        sim.put(event)
    sim.put(o.event(other, "Failed", "not this pod"))

    inspection, _ = await Inspector(api, events_limit=3).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert inspection.events == (
        "Failed: Error: ImagePullBackOff",
        f'BackOff: Back-off pulling image "{IMAGE}"',
        "Failed: Error: ErrImagePull",
    )


async def test_missing_pod(sim: SimCluster, api: Any) -> None:
    """A pod that is gone gives exists=False and no credentials."""
    sim.put(o.namespace(NS))
    inspection, creds = await Inspector(api).inspect(NS, "nope", IMAGE)
    assert not inspection.exists and creds is None


async def test_api_errors_degrade_to_partial_inspection(sim: SimCluster, api: Any) -> None:
    """A 500 on the pod read gives a partial inspection (exists unknown, so True) instead of an exception."""
    pod = deployment_pod(sim)
    sim.faults.fail_next(1, status=500, path_prefix=f"/api/v1/namespaces/{NS}/pods/")
    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)
    assert inspection.exists and inspection.owner_chain == () and creds is None


async def test_every_read_is_bounded(sim: SimCluster, api: Any) -> None:
    """A hanging API server cannot hang inspection beyond the read timeouts."""
    pod = deployment_pod(sim, image_pull_secrets=["x"])
    sim.faults.latency_s = 5.0
    started = time.monotonic()
    inspection, _ = await asyncio.wait_for(
        Inspector(api, timeout_s=0.3).inspect(NS, pod["metadata"]["name"], IMAGE), timeout=4
    )
    assert time.monotonic() - started < 2.0
    assert inspection.exists and inspection.events == ()


async def test_serviceaccount_secrets_are_not_sent_for_an_existing_pod(sim: SimCluster, api: Any) -> None:
    """The kubelet sends only pod.spec.imagePullSecrets: an SA secret the pod lacks gives no credentials."""
    sim.put(o.docker_config_secret("sa-creds", NS, {"registry.example:5000": {"username": "sa", "password": "x"}}))
    sim.put(o.service_account("default", NS, ["sa-creds"]))
    pod = deployment_pod(sim)

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    (check,) = inspection.secrets
    assert check.referenced_by == "serviceaccount" and check.matches_image
    assert inspection.pod_secret_names == ()
    assert creds is None


async def test_path_scoped_key_is_not_sent_for_another_repository(sim: SimCluster, api: Any) -> None:
    """A `host/team` key covers `host/team/...` only (kubelet's URLsMatch): no credentials for `host/shop/web`."""
    sim.put(o.docker_config_secret("team", NS, {"registry.example:5000/team": {"username": "u", "password": "p"}}))
    pod = deployment_pod(sim, image_pull_secrets=["team"])

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert not inspection.secrets[0].matches_image
    assert creds is None


async def test_unreferenced_pull_secrets_of_the_namespace_are_seen(sim: SimCluster, api: Any) -> None:
    """Dockerconfig-type secrets nobody refers to are listed (by type); Opaque ones and other namespaces are not."""
    sim.put(o.docker_config_secret("regcred", NS, {"registry.example:5000": {"username": "u", "password": PASSWORD}}))
    sim.put(o.docker_config_secret("elsewhere", "other", {"registry.example:5000": {"username": "u", "password": "p"}}))
    sim.put(o.opaque_secret("tls-key", NS, {"key": "not a pull secret"}))
    pod = deployment_pod(sim)

    inspection, creds = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert [(c.name, c.referenced_by, c.matches_image) for c in inspection.secrets] == [("regcred", "namespace", True)]
    assert inspection.namespace_secrets_listed and creds is None
    assert PASSWORD not in repr(inspection)

    off, _ = await Inspector(api, list_pull_secrets=False).inspect(NS, pod["metadata"]["name"], IMAGE)
    assert off.secrets == () and not off.namespace_secrets_listed
    assert any("listing them is switched off" in u for u in off.unchecked)


async def test_failed_reads_are_recorded_as_unchecked(sim: SimCluster, api: Any) -> None:
    """A ServiceAccount or node that cannot be read is named in `unchecked`, never taken as empty and fine."""
    sim.put(o.node("node-a"))
    pod = deployment_pod(sim, node_name="node-a")
    sim.faults.fail_next(3, status=403, path_prefix=f"/api/v1/namespaces/{NS}/serviceaccounts/")
    sim.faults.fail_next(3, status=500, path_prefix="/api/v1/nodes/node-a")

    inspection, _ = await Inspector(api).inspect(NS, pod["metadata"]["name"], IMAGE)

    assert any(u.startswith("ServiceAccount default (forbidden)") for u in inspection.unchecked)
    assert any(u.startswith("node node-a (HTTP 500)") for u in inspection.unchecked)
