"""The simulator's RBAC authorizer on its own: verbs, resources, resourceNames, namespaces, the 403 Status.

kube-apiserver's RBAC authorizer (plugin/pkg/auth/authorizer/rbac) and responsewriters.forbiddenMessage.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.kube.client import load_api_client
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster

SA = "system:serviceaccount:ops:reader"


def rbac_objects() -> list[dict[str, Any]]:
    subject = [{"kind": "ServiceAccount", "name": "reader", "namespace": "ops"}]
    return [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {  # a ClusterRole bound by a RoleBinding: only in that namespace
            "kind": "RoleBinding",
            "metadata": {"name": "read-pods", "namespace": "shop"},
            "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
            "subjects": subject,
        },
        {
            "kind": "Role",
            "metadata": {"name": "one-lease", "namespace": "ops"},
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": ["mine"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "one-lease", "namespace": "ops"},
            "roleRef": {"kind": "Role", "name": "one-lease"},
            "subjects": subject,
        },
    ]


@pytest.fixture
async def reader(sim: SimCluster, tmp_path: Path) -> AsyncIterator[Any]:
    sim.load_rbac(rbac_objects())
    token = sim.service_account_token("ops", "reader")
    config = sim.write_kubeconfig(tmp_path / "kc", token=token)
    api = await load_api_client(KubeSettings(kubeconfig=config, exclude_namespaces=[]))
    async with api:
        yield api


async def forbidden(call: Any) -> str:
    with pytest.raises(k8s.ApiException) as err:
        await call
    assert err.value.status == 403
    status = json.loads(err.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Forbidden" and status["code"] == 403
    return str(status["message"])


async def test_rules_bind_verbs_resources_names_and_namespaces(sim: SimCluster, reader: Any) -> None:
    """Granted calls pass; the wrong verb, namespace, name or scope is 403 with apiserver's wording."""
    sim.put(o.pod("web", "shop"))
    sim.put(o.pod("web", "other"))
    sim.put(o.lease("mine", "ops"))
    sim.put(o.lease("theirs", "ops"))
    core, coord = k8s.CoreV1Api(reader), k8s.CoordinationV1Api(reader)
    assert (await core.read_namespaced_pod("web", "shop")).metadata.name == "web"
    assert len((await core.list_namespaced_pod("shop")).items) == 1
    assert (await coord.read_namespaced_lease("mine", "ops")).metadata.name == "mine"

    assert await forbidden(core.read_namespaced_pod("web", "other")) == (
        f'pods "web" is forbidden: User "{SA}" cannot get resource "pods" in API group "" in the namespace "other"'
    )
    assert await forbidden(core.list_pod_for_all_namespaces()) == (
        f'pods is forbidden: User "{SA}" cannot list resource "pods" in API group "" at the cluster scope'
    )
    assert "cannot delete resource" in await forbidden(core.delete_namespaced_pod("web", "shop"))
    assert "cannot watch resource" in await forbidden(core.list_namespaced_pod("shop", watch=True))
    assert await forbidden(coord.read_namespaced_lease("theirs", "ops")) == (
        f'leases.coordination.k8s.io "theirs" is forbidden: User "{SA}" cannot get resource "leases" in API group'
        ' "coordination.k8s.io" in the namespace "ops"'
    )
    assert "cannot list resource" in await forbidden(coord.list_namespaced_lease("ops"))  # names never list
    status_patch = await forbidden(core.patch_namespaced_pod_status("web", "shop", {"status": {}}))
    assert 'cannot patch resource "pods/status"' in status_patch
    refused = [(a.verb, a.resource) for user, a, ok in sim.authorizations if not ok and user == SA]
    assert ("get", "pods") in refused and ("list", "leases") in refused


async def test_discovery_is_open_to_every_authenticated_user(sim: SimCluster, reader: Any) -> None:
    """Non-resource URLs (discovery, /version) are allowed, as system:discovery grants them."""
    assert (await k8s.CoreApi(reader).get_api_versions()).versions == ["v1"]
    assert (await k8s.VersionApi(reader).get_code()).major == "1"
