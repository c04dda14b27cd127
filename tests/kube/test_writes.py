"""Cluster actions against the simulated API server, through the real kubernetes_asyncio client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.kube.dockerconfig import credentials_for, fingerprint, parse_secret
from bot.kube.writes import COPIED_FROM_ANNOTATION, KubeActions
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster

NS = "shop"
PASSWORD = "Hunter2-never-shown"
HOSTILE = ["../etc/passwd", "a;rm -rf /", "UPPER", "x" * 300, "<!channel>", "", "-lead", "trail-", "a b", "név"]


@pytest.fixture
def actions(api: Any) -> KubeActions:
    return KubeActions(api)


def controlled_pod(sim: SimCluster) -> str:
    deploy, rs, (pod,) = o.deployment_with_pods("web", NS, "registry.example:5000/web:1", waiting_reason="ErrImagePull")
    for obj in (deploy, rs, pod):
        sim.put(obj)
    return str(pod["metadata"]["name"])


def secret_creds(sim: SimCluster, name: str, host: str, ns: str = NS) -> Any:
    obj = sim.get("Secret", ns, name)
    assert obj is not None
    return credentials_for(parse_secret(obj["type"], obj["data"]), host)


# ---- delete_pod ----


async def test_delete_pod_dry_run_changes_nothing(sim: SimCluster, actions: KubeActions) -> None:
    """A dry run asks the server (dryRun=All) and leaves the pod in place."""
    pod = controlled_pod(sim)
    rv = sim.resource_version

    result = await actions.delete_pod(NS, pod, dry_run=True)

    assert result.ok and result.dry_run and not result.changed
    assert "would be deleted" in result.message and "ReplicaSet" in result.message
    assert sim.get("Pod", NS, pod) is not None
    assert sim.resource_version == rv
    assert any(m == "DELETE" and "dryRun=All" in p for m, p in sim.requests)


async def test_delete_controlled_pod(sim: SimCluster, actions: KubeActions) -> None:
    """A real delete starts the pod's graceful termination; its ReplicaSet makes a replacement at once."""
    pod = controlled_pod(sim)

    result = await actions.delete_pod(NS, pod, dry_run=False)

    assert result.ok and result.changed and not result.dry_run
    assert sim.terminating(NS, pod)
    assert len(sim.list("Pod", NS)) == 2  # the Terminating one and the replacement
    assert sim.finish_deletion(NS, pod) is not None  # its kubelet confirms
    assert len(sim.list("Pod", NS)) == 1


async def test_terminating_pod_is_not_deleted_again(sim: SimCluster, actions: KubeActions) -> None:
    """A pod already Terminating (deleted, waiting for its grace period) is left alone, with a clear message."""
    pod = controlled_pod(sim)
    sim.delete("Pod", NS, pod, grace_period_s=None)
    assert sim.terminating(NS, pod)
    deletes = sum(1 for m, _ in sim.requests if m == "DELETE")
    result = await actions.delete_pod(NS, pod, dry_run=False)
    assert result.ok and not result.changed and "already being deleted" in result.message
    assert sum(1 for m, _ in sim.requests if m == "DELETE") == deletes


async def test_bare_pod_refused(sim: SimCluster, actions: KubeActions) -> None:
    """A pod no controller owns is not deleted, dry run or not."""
    sim.put(o.pod("lonely", NS))
    for dry_run in (True, False):
        result = await actions.delete_pod(NS, "lonely", dry_run=dry_run)
        assert not result.ok
        assert result.message.startswith("bare pod: deleting it would remove it for good")
    assert sim.get("Pod", NS, "lonely") is not None
    assert not any(m == "DELETE" for m, _ in sim.requests)


async def test_delete_forbidden_names_the_permission(sim: SimCluster, actions: KubeActions) -> None:
    """RBAC refusing the (dry-run) delete gives a clear message naming the verb and resource."""
    pod = controlled_pod(sim)
    sim.faults.fail_next(1, status=403, path_prefix=f"/api/v1/namespaces/{NS}/pods/", method="DELETE")

    result = await actions.delete_pod(NS, pod, dry_run=True)

    assert not result.ok
    assert 'verb "delete" on "pods"' in result.message and NS in result.message
    assert sim.get("Pod", NS, pod) is not None


async def test_delete_missing_pod(sim: SimCluster, actions: KubeActions) -> None:
    """Deleting a pod that is gone says so."""
    sim.put(o.namespace(NS))
    result = await actions.delete_pod(NS, "gone", dry_run=False)
    assert not result.ok and "does not exist" in result.message


async def test_server_error_is_reported_not_raised(sim: SimCluster, actions: KubeActions) -> None:
    """A 500 from the API server becomes a failed result."""
    pod = controlled_pod(sim)
    sim.faults.fail_next(1, status=500, method="DELETE")
    result = await actions.delete_pod(NS, pod, dry_run=False)
    assert not result.ok and "HTTP 500" in result.message
    assert sim.get("Pod", NS, pod) is not None


# ---- hostile names ----


@pytest.mark.parametrize("bad", HOSTILE)
async def test_hostile_names_rejected_without_any_request(sim: SimCluster, actions: KubeActions, bad: str) -> None:
    """Invalid names are refused before any API call, and the message does not echo them."""
    before = len(sim.requests)
    results = [
        await actions.delete_pod(bad, "pod", dry_run=False),
        await actions.delete_pod(NS, bad, dry_run=False),
        await actions.upsert_pull_secret(NS, bad, "ghcr.io", "u", "p", dry_run=False),
        await actions.upsert_pull_secret(bad, "s", "ghcr.io", "u", "p", dry_run=False),
        await actions.copy_secret(NS, bad, "other", "s", dry_run=False),
        await actions.copy_secret(NS, "s", bad, "s", dry_run=False),
        await actions.link_secret(NS, bad, "s", dry_run=False),
        await actions.link_secret(NS, "default", bad, dry_run=False),
    ]
    for result in results:
        assert not result.ok and "invalid" in result.message and "nothing was changed" in result.message
        if len(bad) > 1:
            assert bad not in result.message
    assert len(sim.requests) == before


@pytest.mark.parametrize(
    ("server", "username", "password", "fragment"),
    [
        ("ghcr.io/../../x y", "u", "p", "registry server"),
        ("<!here>", "u", "p", "registry server"),
        ("ghcr.io", "", "p", "username"),
        ("ghcr.io", "a:b", "p", "username"),
        ("ghcr.io", "u", "", "password"),
    ],
)
async def test_invalid_credentials_rejected(
    sim: SimCluster, actions: KubeActions, server: str, username: str, password: str, fragment: str
) -> None:
    """A bad server, username or password is refused with a message that names the field only."""
    result = await actions.upsert_pull_secret(NS, "creds", server, username, password, dry_run=False)
    assert not result.ok and fragment in result.message
    assert sim.get("Secret", NS, "creds") is None


# ---- upsert_pull_secret ----


async def test_upsert_creates_replaces_and_is_idempotent(sim: SimCluster, actions: KubeActions) -> None:
    """Create, repeat (no change), rotate (fingerprints old -> new), never printing the password."""
    sim.put(o.namespace(NS))
    host = "registry.example:5000"

    created = await actions.upsert_pull_secret(NS, "creds", f"https://{host}/v2/", "bot", PASSWORD, dry_run=False)
    assert created.ok and created.changed
    assert created.old_fingerprint is None and created.new_fingerprint == fingerprint(host, "bot", PASSWORD)
    obj = sim.get("Secret", NS, "creds")
    assert obj is not None and obj["type"] == "kubernetes.io/dockerconfigjson"
    creds = secret_creds(sim, "creds", host)
    assert creds is not None and (creds.username, creds.password) == ("bot", PASSWORD)

    rv = sim.resource_version
    again = await actions.upsert_pull_secret(NS, "creds", host, "bot", PASSWORD, dry_run=False)
    assert again.ok and not again.changed and "nothing to change" in again.message
    assert sim.resource_version == rv

    rotated = await actions.upsert_pull_secret(NS, "creds", host, "bot", "new-" + PASSWORD, dry_run=False)
    assert rotated.ok and rotated.changed
    assert rotated.old_fingerprint == created.new_fingerprint
    assert rotated.new_fingerprint == fingerprint(host, "bot", "new-" + PASSWORD)
    assert secret_creds(sim, "creds", host).password == "new-" + PASSWORD
    for result in (created, again, rotated):
        assert PASSWORD not in result.message


async def test_upsert_keeps_other_registries(sim: SimCluster, actions: KubeActions) -> None:
    """Replacing one registry's entry keeps the other entries of the secret."""
    sim.put(o.docker_config_secret("multi", NS, {"ghcr.io": {"username": "g", "password": "gp"}}))

    result = await actions.upsert_pull_secret(NS, "multi", "docker.io", "hub", "hp", dry_run=False)

    assert result.ok and "keeping 1 other registry" in result.message
    assert secret_creds(sim, "multi", "ghcr.io").username == "g"
    assert secret_creds(sim, "multi", "docker.io").username == "hub"


async def test_upsert_dry_run_and_wrong_type(sim: SimCluster, actions: KubeActions) -> None:
    """A dry run creates nothing; a secret of another type is left alone."""
    sim.put(o.opaque_secret("opaque", NS, {"k": "v"}))

    dry = await actions.upsert_pull_secret(NS, "new", "ghcr.io", "u", "p", dry_run=True)
    assert dry.ok and dry.dry_run and not dry.changed and dry.message.startswith("dry run:")
    assert sim.get("Secret", NS, "new") is None

    refused = await actions.upsert_pull_secret(NS, "opaque", "ghcr.io", "u", "p", dry_run=False)
    assert not refused.ok and "type Opaque" in refused.message
    assert sim.get("Secret", NS, "opaque")["type"] == "Opaque"  # type: ignore[index]


async def test_upsert_forbidden(sim: SimCluster, actions: KubeActions) -> None:
    """RBAC refusing the create is reported with the permission."""
    sim.put(o.namespace(NS))
    sim.faults.fail_next(1, status=403, path_prefix=f"/api/v1/namespaces/{NS}/secrets", method="POST")
    result = await actions.upsert_pull_secret(NS, "creds", "ghcr.io", "u", "p", dry_run=True)
    assert not result.ok and 'verb "create" on "secrets"' in result.message


# ---- copy_secret ----


async def test_copy_secret_copies_type_and_data_only(sim: SimCluster, actions: KubeActions) -> None:
    """The copy has the source's type and data, its own uid, no owners; a repeat changes nothing."""
    source = o.docker_config_secret("creds", "ci", {"ghcr.io": {"username": "u", "password": PASSWORD}})
    source["metadata"]["ownerReferences"] = [o.owner_reference(o.deployment("owner", "ci"))]
    source["metadata"]["labels"] = {"team": "ci"}
    stored = sim.put(source)
    sim.put(o.namespace(NS))

    dry = await actions.copy_secret("ci", "creds", NS, "creds", dry_run=True)
    assert dry.ok and sim.get("Secret", NS, "creds") is None

    result = await actions.copy_secret("ci", "creds", NS, "creds", dry_run=False)
    assert result.ok and result.changed
    copy = sim.get("Secret", NS, "creds")
    assert copy is not None
    assert copy["type"] == stored["type"] and copy["data"] == stored["data"]
    assert copy["metadata"]["uid"] != stored["metadata"]["uid"]
    assert "ownerReferences" not in copy["metadata"]
    assert copy["metadata"]["annotations"][COPIED_FROM_ANNOTATION] == "ci/creds"
    assert PASSWORD not in result.message

    rv = sim.resource_version
    again = await actions.copy_secret("ci", "creds", NS, "creds", dry_run=False)
    assert again.ok and not again.changed and sim.resource_version == rv


async def test_copy_secret_overwrites_changed_target_and_refuses_bad_cases(
    sim: SimCluster, actions: KubeActions
) -> None:
    """A stale copy is overwritten; a missing source, a same-name copy and a type clash are refused."""
    sim.put(o.docker_config_secret("creds", "ci", {"ghcr.io": {"username": "new", "password": "p"}}))
    sim.put(o.docker_config_secret("creds", NS, {"ghcr.io": {"username": "old", "password": "p"}}))
    sim.put(o.opaque_secret("plain", NS))

    result = await actions.copy_secret("ci", "creds", NS, "creds", dry_run=False)
    assert result.ok and "overwrote" in result.message
    assert secret_creds(sim, "creds", "ghcr.io").username == "new"

    missing = await actions.copy_secret("ci", "nope", NS, "x", dry_run=False)
    assert not missing.ok and "does not exist" in missing.message
    same = await actions.copy_secret(NS, "creds", NS, "creds", dry_run=False)
    assert not same.ok and "same secret" in same.message
    clash = await actions.copy_secret("ci", "creds", NS, "plain", dry_run=False)
    assert not clash.ok and "type Opaque" in clash.message


# ---- link_secret ----


async def test_link_secret_appends_and_is_idempotent(sim: SimCluster, actions: KubeActions) -> None:
    """Linking appends to imagePullSecrets (keeping existing entries); a repeat changes nothing."""
    sim.put(o.service_account("builder", NS, ["existing"]))
    sim.put(o.docker_config_secret("creds", NS, {"ghcr.io": {"username": "u", "password": "p"}}))

    dry = await actions.link_secret(NS, "builder", "creds", dry_run=True)
    assert dry.ok and dry.dry_run
    assert sim.get("ServiceAccount", NS, "builder")["imagePullSecrets"] == [{"name": "existing"}]  # type: ignore[index]

    result = await actions.link_secret(NS, "builder", "creds", dry_run=False)
    assert result.ok and result.changed and "note" not in result.message
    sa = sim.get("ServiceAccount", NS, "builder")
    assert sa is not None and sa["imagePullSecrets"] == [{"name": "existing"}, {"name": "creds"}]
    assert any(m == "PATCH" for m, _ in sim.requests)

    rv = sim.resource_version
    again = await actions.link_secret(NS, "builder", "creds", dry_run=False)
    assert again.ok and not again.changed and "already" in again.message
    assert sim.resource_version == rv


async def test_link_secret_to_sa_without_list_and_missing_cases(sim: SimCluster, actions: KubeActions) -> None:
    """A ServiceAccount without imagePullSecrets gets the list; a missing secret is noted; a missing SA refused."""
    sim.put(o.service_account("default", NS))

    result = await actions.link_secret(NS, "default", "not-yet", dry_run=False)
    assert result.ok and "does not exist yet" in result.message
    assert sim.get("ServiceAccount", NS, "default")["imagePullSecrets"] == [{"name": "not-yet"}]  # type: ignore[index]

    missing = await actions.link_secret(NS, "ghost", "creds", dry_run=False)
    assert not missing.ok and "does not exist" in missing.message


async def test_link_secret_retries_after_concurrent_change(sim: SimCluster, actions: KubeActions) -> None:
    """A conflicting write between read and patch makes the action read again, not lose either change."""
    sim.put(o.service_account("default", NS, ["a"]))
    sim.faults.fail_next(1, status=409, method="PATCH")

    result = await actions.link_secret(NS, "default", "b", dry_run=False)

    assert result.ok
    assert sim.get("ServiceAccount", NS, "default")["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]  # type: ignore[index]


async def test_missing_namespace_is_named(sim: SimCluster, actions: KubeActions) -> None:
    """Writing a secret into a namespace that does not exist says so."""
    sim.put(o.docker_config_secret("creds", "ci", {"ghcr.io": {"username": "u", "password": "p"}}))
    created = await actions.upsert_pull_secret("nowhere", "creds", "ghcr.io", "u", "p", dry_run=False)
    copied = await actions.copy_secret("ci", "creds", "nowhere", "creds", dry_run=False)
    for result in (created, copied):
        assert not result.ok and "namespace nowhere does not exist" in result.message


# ---- delete_pod and the pod it was proposed for (issue 13 point 6) ----


def _statefulset_pod(sim: SimCluster, name: str = "db-0") -> Any:
    sts = sim.put(o.statefulset("db", NS, "nginx:1.99"))
    pod = o.pod_for(sts, waiting={"db": ("ErrImagePull", None)})
    return sim.put(pod)


async def test_delete_refuses_a_new_pod_of_the_same_name(sim: SimCluster, actions: KubeActions) -> None:
    """Proposed for one pod, approved after the StatefulSet replaced it by a new `db-0`: nothing is deleted."""
    old = _statefulset_pod(sim)
    dry = await actions.delete_pod(NS, "db-0", dry_run=True)
    assert dry.ok and dry.target_uid == old["metadata"]["uid"]
    sim.delete("Pod", NS, "db-0")
    new = _statefulset_pod(sim)

    result = await actions.delete_pod(NS, "db-0", dry_run=False, uid=dry.target_uid)

    assert not result.ok and "replaced by a new pod of the same name" in result.message
    kept = sim.get("Pod", NS, "db-0")
    assert kept is not None and kept["metadata"]["uid"] == new["metadata"]["uid"]


async def test_delete_uid_precondition_conflict_is_a_clear_outcome(sim: SimCluster, actions: KubeActions) -> None:
    """The pod is replaced between the bot's read and its delete: the uid precondition gets 409, said plainly."""
    _statefulset_pod(sim)
    sim.faults.latency_s = 0.3
    task = asyncio.create_task(actions.delete_pod(NS, "db-0", dry_run=False))
    deadline = asyncio.get_running_loop().time() + 5
    while not any(m == "DELETE" for m, _ in sim.requests):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    sim.delete("Pod", NS, "db-0")  # the DELETE is still on its way (latency)
    new = _statefulset_pod(sim)

    result = await task

    assert not result.ok
    assert "replaced by a new pod of the same name (uid precondition failed)" in result.message
    kept = sim.get("Pod", NS, "db-0")
    assert kept is not None and kept["metadata"]["uid"] == new["metadata"]["uid"]


async def test_delete_of_a_terminating_pod_does_nothing(sim: SimCluster, actions: KubeActions) -> None:
    """A pod already Terminating (deletionTimestamp set, e.g. on a lost node) is not deleted again."""
    pod = controlled_pod(sim)
    obj = sim.get("Pod", NS, pod)
    assert obj is not None
    obj["metadata"]["deletionTimestamp"] = "2026-11-30T03:00:00Z"
    obj["metadata"]["deletionGracePeriodSeconds"] = 30
    sim.put(obj)

    result = await actions.delete_pod(NS, pod, dry_run=False)

    assert result.ok and not result.changed
    assert "already being deleted (Terminating since 2026-11-30 03:00:00 UTC)" in result.message
    assert not any(m == "DELETE" for m, _ in sim.requests)


# ---- secrets the bot does not own (issue 13, point 7) ----


def external_secret_owner(ns: str = NS) -> dict[str, Any]:
    """An ownerReferences entry as External Secrets' controller writes it on the Secrets it manages."""
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "name": "registry-creds",
        "uid": "5d0c8f6e-0000-4000-8000-000000000001",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def foreign_secret(name: str, username: str, ns: str = NS, **meta: Any) -> dict[str, Any]:
    secret = o.docker_config_secret(name, ns, {"ghcr.io": {"username": username, "password": "p"}})
    secret["metadata"].update(meta)
    return secret


async def test_upsert_patches_data_and_keeps_what_it_does_not_own(sim: SimCluster, actions: KubeActions) -> None:
    """Replacing a credential sends a patch of `data` only: owners, finalizers, labels, annotations stay."""
    helm_owner = {**external_secret_owner(), "kind": "ConfigMap", "name": "bundle", "controller": False}
    sim.put(
        foreign_secret(
            "creds",
            "old",
            ownerReferences=[helm_owner],
            finalizers=["example.com/keep"],
            labels={"team": "payments", "app.kubernetes.io/managed-by": "Helm"},
            annotations={"meta.helm.sh/release-name": "pay"},
        )
    )
    before = sim.get("Secret", NS, "creds")
    assert before is not None

    result = await actions.upsert_pull_secret(NS, "creds", "ghcr.io", "new", "p2", dry_run=False)

    assert result.ok and result.changed, result.message
    after = sim.get("Secret", NS, "creds")
    assert after is not None
    assert secret_creds(sim, "creds", "ghcr.io").username == "new"
    for key in ("ownerReferences", "finalizers", "labels", "annotations", "uid"):
        assert after["metadata"][key] == before["metadata"][key], key
    writes = [m for m, p in sim.requests if p.startswith(f"/api/v1/namespaces/{NS}/secrets/creds") and m != "GET"]
    assert writes == ["PATCH"]


@pytest.mark.parametrize("dry_run", [True, False])
async def test_upsert_refuses_a_controller_owned_secret(sim: SimCluster, actions: KubeActions, dry_run: bool) -> None:
    """A Secret an ExternalSecret controls is refused, naming the owner; nothing is written."""
    sim.put(foreign_secret("creds", "old", ownerReferences=[external_secret_owner()]))
    rv = sim.resource_version

    result = await actions.upsert_pull_secret(NS, "creds", "ghcr.io", "new", "p2", dry_run=dry_run)

    assert not result.ok
    assert "ExternalSecret registry-creds" in result.message and "nothing was changed" in result.message
    assert sim.resource_version == rv
    assert secret_creds(sim, "creds", "ghcr.io").username == "old"


async def test_upsert_refuses_an_immutable_secret(sim: SimCluster, actions: KubeActions) -> None:
    """An immutable Secret gets a clear refusal, not "HTTP 422; try again"."""
    secret = foreign_secret("creds", "old")
    secret["immutable"] = True
    sim.put(secret)

    result = await actions.upsert_pull_secret(NS, "creds", "ghcr.io", "new", "p2", dry_run=False)

    assert not result.ok
    assert "immutable" in result.message and "try again" not in result.message
    assert secret_creds(sim, "creds", "ghcr.io").username == "old"


async def test_copy_over_a_target_keeps_its_metadata_and_refuses_a_sealed_one(
    sim: SimCluster, actions: KubeActions
) -> None:
    """Overwriting a copy patches its data only; a SealedSecret-controlled target is refused naming it."""
    sim.put(foreign_secret("creds", "new", "ci"))
    sim.put(foreign_secret("creds", "old", finalizers=["example.com/keep"], labels={"team": "payments"}))
    sealed_owner = {**external_secret_owner(), "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret"}
    sealed_owner["name"] = "sealed-creds"
    sim.put(foreign_secret("sealed", "old", ownerReferences=[sealed_owner]))

    result = await actions.copy_secret("ci", "creds", NS, "creds", dry_run=False)
    assert result.ok and result.changed, result.message
    after = sim.get("Secret", NS, "creds")
    assert after is not None
    assert after["metadata"]["finalizers"] == ["example.com/keep"]
    assert after["metadata"]["labels"] == {"team": "payments"}
    assert after["metadata"]["annotations"][COPIED_FROM_ANNOTATION] == "ci/creds"
    assert secret_creds(sim, "creds", "ghcr.io").username == "new"

    refused = await actions.copy_secret("ci", "creds", NS, "sealed", dry_run=False)
    assert not refused.ok and "SealedSecret sealed-creds" in refused.message
    assert secret_creds(sim, "sealed", "ghcr.io").username == "old"
