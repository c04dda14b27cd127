"""RBAC that cannot drift (issue 13, point 9): the bot runs under the Helm chart's own Roles in the simulator.

The chart is rendered with real Helm (as tests/deploy/test_chart.py does), its Role/ClusterRole objects and bindings
are loaded into the simulated API server, and the bot's components talk to it with the ServiceAccount's token: every
call the bot makes must be granted (a 403 fails the test), and every grant must be used by some call (an unused grant
fails it too), so the chart and the code cannot drift apart in either direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.imageref import ImageRef
from bot.kube.client import load_api_client
from bot.kube.inspect import Inspector
from bot.kube.lease import LeaderElector
from bot.kube.watcher import PodWatcher, run_until_synced
from bot.kube.writes import KubeActions
from bot.model import Credentials, ProbeOutcome, ProbeResult
from bot.prevention.scanner import LatentScanner
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.deploy.test_chart import BASE, FULLNAME, NAMESPACE, manifests, merge_values, render_helm

pytestmark = pytest.mark.integration

NS, SOURCE_NS = "shop", "ci"
VALUES = merge_values(
    BASE,
    {
        "secrets": {"readNamespaces": [NS, SOURCE_NS]},
        "actions": {"deletePod": True, "recreateSecret": True, "linkSecret": True, "namespaces": [NS]},
    },
)
LEASE = "ipd-imagepull-doctor-prod-eu-1"  # <fullname>-<cluster.name>, what the chart's Role names


def chart_rbac() -> list[dict[str, Any]]:
    """The RBAC objects of the chart rendered with VALUES."""
    kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    return [obj for obj in manifests(render_helm(VALUES)) if obj["kind"] in kinds]


def granted(objects: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(namespace or "*", apiGroup, resource, verb) the chart grants the bot."""
    roles = {(r["kind"], r["metadata"].get("namespace", "*"), r["metadata"]["name"]): r for r in objects}
    out: set[tuple[str, str, str, str]] = set()
    for binding in (b for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ns = binding["metadata"].get("namespace", "*")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], "*" if ref["kind"] == "ClusterRole" else ns, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out |= {(ns, group, resource, verb) for verb in rule["verbs"]}
    return out


@pytest.fixture
async def bot_api(tmp_path: Path) -> AsyncIterator[tuple[SimCluster, Any]]:
    """A simulator enforcing the chart's RBAC, and an ApiClient authenticated as the bot's ServiceAccount."""
    sim = SimCluster(bookmark_interval_s=0.2, termination_s=0.2)
    await sim.start()
    assert sim.load_rbac(chart_rbac()) >= 4
    token = sim.service_account_token(NAMESPACE, FULLNAME)
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig", token=token)
    api = await load_api_client(KubeSettings(kubeconfig=kubeconfig, exclude_namespaces=[]))
    try:
        yield sim, api
    finally:
        await api.close()
        await sim.stop()


def world(sim: SimCluster) -> dict[str, str]:
    """Pods of every owner kind the bot resolves, failing to pull; pull secrets; the release namespace."""
    sim.put(o.node("node-1"))
    sim.put(o.namespace(NAMESPACE))
    sim.put(o.docker_config_secret("regcred", SOURCE_NS, {"ghcr.io": {"username": "u", "password": "p"}}))
    sim.put(o.service_account("default", NS, image_pull_secrets=["regcred"]))
    failing = {"app": ("ErrImagePull", None)}
    pods: dict[str, str] = {}
    deploy, rs, (pod,) = o.deployment_with_pods("web", NS, waiting_reason="ErrImagePull")
    for obj in (deploy, rs, pod):
        sim.put(obj)
    pods["deployment"] = pod["metadata"]["name"]
    sts = o.statefulset("db", NS)
    sim.put(sts)
    pods["statefulset"] = sim.put(o.pod_for(sts, 0, waiting={"db": ("ErrImagePull", None)}))["metadata"]["name"]
    ds = o.daemonset("agent", NS)
    sim.put(ds)
    pods["daemonset"] = sim.put(o.pod_for(ds, waiting={"agent": ("ErrImagePull", None)}))["metadata"]["name"]
    cj = o.cronjob("nightly", NS)
    sim.put(cj)
    job = sim.put(o.job("nightly", NS, owner=cj))
    pods["cronjob"] = sim.put(o.pod_for(job, waiting={job["metadata"]["name"]: ("ErrImagePull", None)}))["metadata"][
        "name"
    ]
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": NS, "uid": "11111111-2222-4333-8444-555555555555"},
        "spec": {"replicas": 1, "selector": {"app": "legacy"}, "template": deploy["spec"]["template"]},
    }
    sim.put(rc)
    rc_pod = o.pod("legacy-x7k2p", NS, containers=[o.container("app", "nginx:9.9")], owner=rc, waiting=failing)
    pods["replicationcontroller"] = sim.put(rc_pod)["metadata"]["name"]
    for name in pods.values():
        current = sim.get("Pod", NS, name)
        assert current is not None
        container = current["spec"]["containers"][0]["name"]
        sim.put(o.failed_pull_event(current, container))
    return pods


class NoRegistry:
    """The scan's prober for an RBAC test: no registry is asked (what the scan reads from the API is the point)."""

    async def probe(
        self,
        ref: ImageRef,
        credentials: Credentials | None,
        node_platform: str | None,
        *,
        fresh: bool = False,
        near_names: bool = True,
    ) -> ProbeResult:
        return ProbeResult(ref.registry, ref.repository, ref.reference, ProbeOutcome.SKIPPED)


async def exercise(sim: SimCluster, api: Any, pods: dict[str, str]) -> None:
    """Everything the bot does against a cluster: watch, inspect every owner kind, lead, act."""
    settings = KubeSettings(exclude_namespaces=[], secret_namespaces=[NS, SOURCE_NS])
    failures: list[Any] = []

    async def on_failure(failure: Any) -> None:
        failures.append(failure)

    async def on_recovery(_recovery: Any) -> None:
        return None

    watcher = PodWatcher(api, "prod-eu-1", settings, on_failure, on_recovery, backoff_base_s=0.02)
    task = await asyncio.wait_for(run_until_synced(watcher), 10)
    try:
        inspector = Inspector.from_settings(api, settings)
        for name in pods.values():
            inspection, _creds = await inspector.inspect(NS, name, "nginx:9.9")
            assert inspection is not None
        # a failing pod in the other namespace whose secrets the bot reads (the copy source): its pull secrets too
        ci_pod = sim.put(o.pod("builder-1", SOURCE_NS, containers=[o.container("app", "ghcr.io/acme/builder:1")]))
        inspection, _creds = await inspector.inspect(SOURCE_NS, ci_pod["metadata"]["name"], "ghcr.io/acme/builder:1")
        assert inspection is not None
        elector = LeaderElector(
            api, namespace=NAMESPACE, name=LEASE, identity="bot-0", lease_duration_s=1.5, renew_s=0.2, retry_s=0.2
        )
        leading = asyncio.create_task(elector.run())
        await asyncio.wait_for(elector.is_leader.wait(), 5)
        await asyncio.sleep(0.5)  # renewals
        leading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leading
        actions = KubeActions(api)
        results = [
            await actions.delete_pod(NS, pods["deployment"], dry_run=False),
            await actions.upsert_pull_secret(NS, "ghcr", "ghcr.io", "u", "p1", dry_run=False),
            await actions.upsert_pull_secret(NS, "ghcr", "ghcr.io", "u", "p2", dry_run=False),
            await actions.copy_secret(SOURCE_NS, "regcred", NS, "regcred", dry_run=False),
            await actions.upsert_pull_secret(NS, "regcred", "quay.io", "u", "p", dry_run=False),
            await actions.link_secret(NS, "default", "ghcr", dry_run=False),
        ]
        assert all(r.ok for r in results), [r.message for r in results if not r.ok]
        assert failures
        report = await LatentScanner(api, NoRegistry()).scan()  # prevention.enabled (the chart's default)
        assert report.workloads >= 4 and report.could_not_read == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_bot_needs_every_grant_of_the_chart_and_nothing_else(bot_api: tuple[SimCluster, Any]) -> None:
    """No call of the bot is refused under the chart's RBAC, and no grant of the chart goes unused."""
    sim, api = bot_api
    await exercise(sim, api, world(sim))
    refused = sorted({(a.verb, a.group, a.resource, a.namespace or "*") for _u, a, ok in sim.authorizations if not ok})
    used = {
        ("*" if (a.namespace is None or ("*", a.group, a.resource, a.verb) in grants) else a.namespace, a.group,
         a.resource, a.verb)
        for grants in [granted(chart_rbac())]
        for _u, a, ok in sim.authorizations
        if ok
    }  # fmt: skip
    unused = sorted(granted(chart_rbac()) - used)
    assert (refused, unused) == ([], []), "(calls the chart does not grant, grants the bot never uses)"


async def test_forbidden_is_a_real_shaped_status(bot_api: tuple[SimCluster, Any]) -> None:
    """What the chart does not grant is 403 Forbidden worded as kube-apiserver words it."""
    _sim, api = bot_api
    core = k8s.CoreV1Api(api)
    with pytest.raises(k8s.ApiException) as err:
        await core.delete_namespaced_secret("regcred", NS)
    assert err.value.status == 403
    status = json.loads(err.value.body)
    assert status["reason"] == "Forbidden" and status["code"] == 403
    assert status["message"] == (
        f'secrets "regcred" is forbidden: User "system:serviceaccount:{NAMESPACE}:{FULLNAME}" cannot delete resource'
        f' "secrets" in API group "" in the namespace "{NS}"'
    )
    with pytest.raises(k8s.ApiException) as err:
        await k8s.CoordinationV1Api(api).read_namespaced_lease("someone-else", NAMESPACE)
    assert err.value.status == 403  # resourceNames: only the bot's own Lease
    with pytest.raises(k8s.ApiException) as err:
        await core.read_namespaced_secret("regcred", "kube-system")
    assert json.loads(err.value.body)["message"].endswith('in the namespace "kube-system"')
