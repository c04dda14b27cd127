"""The simulator's SubjectAccessReview and impersonation (issue 15, point 5), checked with the bot's own reviewer and
with a real kubectl (`auth can-i`, `--as`, `--as-group`), as kube-apiserver answers them:
- rules with resourceNames match only those names (never a create or a collection);
- a RoleBinding grants in its namespace only, also when it binds a ClusterRole;
- Group subjects, including `system:authenticated`, which an impersonated user carries automatically
  (apiserver filters/impersonation.go) but a SubjectAccessReview only when asked with it;
- creating a SubjectAccessReview needs `create subjectaccessreviews`; impersonating needs `impersonate` on
  users/groups, refused with a 403 naming the resource.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.access_checks import AccessCheck
from bot.identity import KubeIdentity
from bot.kube.client import load_api_client
from bot.kube.reviews import AccessReviewer
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.kube.test_kubectl import Kubectl, kubectl_binary

pytestmark = pytest.mark.integration

BOT = ("ops", "reviewer")


def _role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta, "rules": rules}


def _bind(kind: str, name: str, role: tuple[str, str], subjects: list[tuple[str, str]], ns: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    subj = [{"kind": k, "name": n, **({"namespace": "ops"} if k == "ServiceAccount" else {})} for k, n in subjects]
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role[0], "name": role[1]}, "subjects": subj}


RBAC = [
    _role("ClusterRole", "pod-deleter", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]),
    _role(
        "Role",
        "one-secret",
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch"], "resourceNames": ["pull"]}],
        "shop",
    ),
    _role("ClusterRole", "pod-reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
    _role(
        "ClusterRole",
        "reviewer",
        [
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["alice"]},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["sre"]},
        ],
    ),
    # A ClusterRole bound by a RoleBinding: pods in shop only.
    _bind("RoleBinding", "alice-deletes-in-shop", ("ClusterRole", "pod-deleter"), [("User", "alice")], "shop"),
    _bind("RoleBinding", "sre-secret", ("Role", "one-secret"), [("Group", "sre")], "shop"),
    _bind("ClusterRoleBinding", "everyone-lists", ("ClusterRole", "pod-reader"), [("Group", "system:authenticated")]),
    _bind("ClusterRoleBinding", "bot-reviews", ("ClusterRole", "reviewer"), [("ServiceAccount", "reviewer")]),
]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimCluster]:
    cluster = SimCluster()
    await cluster.start()
    cluster.put(o.namespace("shop"))
    cluster.put(o.namespace("prod"))
    cluster.load_rbac(RBAC)
    yield cluster
    await cluster.stop()


@pytest.fixture
async def reviewer(sim: SimCluster, tmp_path: Path) -> AsyncIterator[AccessReviewer]:
    token = sim.service_account_token(*BOT)
    api = await load_api_client(KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc", token=token)))
    yield AccessReviewer(api)
    await api.close()


@pytest.mark.parametrize(
    ("who", "check", "allowed"),
    [
        (KubeIdentity("alice"), AccessCheck("delete", "pods", "shop", "web-1"), True),
        (KubeIdentity("alice"), AccessCheck("delete", "pods", "prod", "web-1"), False),  # RoleBinding: shop only
        (KubeIdentity("alice"), AccessCheck("create", "pods", "shop"), False),
        (KubeIdentity("bob", ("sre",)), AccessCheck("patch", "secrets", "shop", "pull"), True),
        (KubeIdentity("bob", ("sre",)), AccessCheck("patch", "secrets", "shop", "other"), False),  # resourceNames
        (KubeIdentity("bob", ("sre",)), AccessCheck("get", "secrets", "shop"), False),  # a collection: no name
        (KubeIdentity("bob", ("sre",)), AccessCheck("patch", "secrets", "prod", "pull"), False),
        (KubeIdentity("carol"), AccessCheck("list", "pods", "prod"), True),  # system:authenticated, added
        (KubeIdentity("carol"), AccessCheck("delete", "pods", "prod", "x"), False),
    ],
)
async def test_reviews_follow_rbac(
    reviewer: AccessReviewer, who: KubeIdentity, check: AccessCheck, allowed: bool
) -> None:
    answer = await reviewer.review(who, check)
    assert answer.answered and answer.allowed is allowed
    if allowed and who.user == "alice":
        assert (
            answer.reason
            == 'RBAC: allowed by RoleBinding "alice-deletes-in-shop/shop" of ClusterRole "pod-deleter" to User "alice"'
        )


async def test_a_review_without_system_authenticated_is_evaluated_as_asked(sim: SimCluster, tmp_path: Path) -> None:
    """SubjectAccessReview adds no group: asked without system:authenticated, the group binding does not apply."""
    api = await load_api_client(KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc")))
    try:
        body = {"spec": {"user": "carol", "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "x"}}}
        answer = await k8s.AuthorizationV1Api(api).create_subject_access_review(body)
        assert answer.status.allowed is False
        body["spec"]["groups"] = ["system:authenticated"]  # type: ignore[index]
        answer = await k8s.AuthorizationV1Api(api).create_subject_access_review(body)
        assert answer.status.allowed is True
        with pytest.raises(ApiException) as refused:
            await k8s.AuthorizationV1Api(api).create_subject_access_review({"spec": {"resourceAttributes": {}}})
        assert refused.value.status == 422
    finally:
        await api.close()


async def test_asking_needs_create_subjectaccessreviews(sim: SimCluster, tmp_path: Path) -> None:
    token = sim.service_account_token("ops", "nobody")
    api = await load_api_client(KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc", token=token)))
    try:
        answer = await AccessReviewer(api).review(KubeIdentity("alice"), AccessCheck("delete", "pods", "shop", "x"))
        assert not answer.answered and not answer.allowed and "create subjectaccessreviews" in answer.reason
    finally:
        await api.close()


async def test_impersonation_is_held_to_the_senders_rbac(sim: SimCluster, tmp_path: Path) -> None:
    """The bot's ServiceAccount may impersonate alice and the group sre only; every group is one header line."""
    token = sim.service_account_token(*BOT)
    api = await load_api_client(KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kc", token=token)))
    core = k8s.CoreV1Api(api)
    sim.put(o.pod("web-1", "shop"))
    try:
        pod = await core.read_namespaced_pod("web-1", "shop", _headers={"Impersonate-User": "alice"})
        assert pod.metadata.name == "web-1"
        headers = {"Impersonate-User": "alice", "Impersonate-Group": ["sre", "sre"]}
        secret_rv = await core.list_namespaced_pod("shop", _headers=headers)  # system:authenticated may list
        assert secret_rv.items
        assert sim.impersonations[-1].groups == ("sre", "sre")
        for headers, resource in (
            ({"Impersonate-User": "bob"}, "users"),
            ({"Impersonate-User": "alice", "Impersonate-Group": ["sre", "system:masters"]}, "groups"),
        ):
            with pytest.raises(ApiException) as refused:
                await core.read_namespaced_pod("web-1", "shop", _headers=headers)
            assert refused.value.status == 403
            assert f'cannot impersonate resource "{resource}"' in json.loads(refused.value.body)["message"]
        with pytest.raises(ApiException) as refused:
            await core.read_namespaced_pod("web-1", "shop", _headers={"Impersonate-Group": "sre"})
        assert refused.value.status == 500  # groups without a user
        with pytest.raises(ApiException) as refused:  # alice may not delete in prod, impersonated or not
            await core.delete_namespaced_pod("web-1", "prod", _headers={"Impersonate-User": "alice"})
        message = json.loads(refused.value.body)["message"]
        assert refused.value.status == 403 and 'User "alice" cannot delete resource "pods"' in message
    finally:
        await api.close()


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_auth_can_i_as_someone(sim: SimCluster, tmp_path: Path, version: str) -> None:
    """A real kubectl asks SelfSubjectAccessReviews while impersonating (`--as`, `--as-group`)."""
    home = tmp_path / "home"
    home.mkdir()
    admin = Kubectl(kubectl_binary(version), sim.write_kubeconfig(tmp_path / "admin"), home)

    async def can_i(kubectl: Kubectl, *args: str) -> str:
        proc = await kubectl.start("auth", "can-i", *args)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return out.decode().strip()

    assert await can_i(admin, "delete", "pods", "-n", "shop", "--as", "alice") == "yes"
    assert await can_i(admin, "delete", "pods", "-n", "prod", "--as", "alice") == "no"
    assert await can_i(admin, "patch", "secrets/pull", "-n", "shop", "--as", "bob", "--as-group", "sre") == "yes"
    assert await can_i(admin, "patch", "secrets/other", "-n", "shop", "--as", "bob", "--as-group", "sre") == "no"
    token = sim.service_account_token(*BOT)
    bot = Kubectl(kubectl_binary(version), sim.write_kubeconfig(tmp_path / "bot", token=token), home)
    assert await can_i(bot, "delete", "pods", "-n", "shop", "--as", "alice") == "yes"
    proc = await bot.start("auth", "can-i", "delete", "pods", "-n", "shop", "--as", "bob")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0 and 'cannot impersonate resource "users"' in err.decode()
