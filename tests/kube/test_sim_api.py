"""The simulated API server from the real kubernetes_asyncio client's point of view, over HTTP."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


async def test_discovery_and_version(sim: SimCluster, api: k8s.ApiClient) -> None:
    """/version, /api, /apis and resource lists answer as a real server's do."""
    version = await k8s.VersionApi(api).get_code()
    assert version.major == "1"
    assert (await k8s.CoreApi(api).get_api_versions()).versions == ["v1"]
    groups = {g.name for g in (await k8s.ApisApi(api).get_api_versions()).groups}
    assert {"apps", "batch", "coordination.k8s.io"} <= groups
    resources = {r.name for r in (await k8s.CoreV1Api(api).get_api_resources()).resources}
    assert {"pods", "events", "secrets", "serviceaccounts", "nodes", "namespaces"} <= resources
    apps = {r.name for r in (await k8s.AppsV1Api(api).get_api_resources()).resources}
    assert {"deployments", "replicasets", "statefulsets", "daemonsets"} <= apps


async def test_list_namespaced_and_cluster_wide_with_selectors(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Lists carry kind, resourceVersion and items; label and field selectors filter."""
    core = k8s.CoreV1Api(api)
    sim.put(o.pod("a", "one", labels={"app": "a"}, node_name="n1"))
    sim.put(o.pod("b", "one", labels={"app": "b"}, node_name="n2"))
    sim.put(o.pod("c", "two", labels={"app": "a"}, node_name="n1"))
    everything = await core.list_pod_for_all_namespaces()
    assert everything.kind == "PodList"
    assert int(everything.metadata.resource_version) == sim.resource_version
    assert [p.metadata.name for p in everything.items] == ["a", "b", "c"]
    assert [p.metadata.name for p in (await core.list_namespaced_pod("one")).items] == ["a", "b"]
    assert [p.metadata.name for p in (await core.list_pod_for_all_namespaces(label_selector="app=a")).items] == [
        "a",
        "c",
    ]
    by_node = await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1,metadata.name!=c")
    assert [p.metadata.name for p in by_node.items] == ["a"]
    in_set = await core.list_pod_for_all_namespaces(label_selector="app in (b, c)")
    assert [p.metadata.name for p in in_set.items] == ["b"]


async def test_pages_cover_every_object_once_in_key_order(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Cluster-wide pages follow (namespace, name) order across namespaces whose names prefix each other, a page
    boundary survives a delete and a create between pages, and a selected list carries no remainingItemCount."""
    core = k8s.CoreV1Api(api)
    for ns in ("a", "a-b", "b"):
        sim.put(o.namespace(ns))
        for i in range(3):
            sim.put(o.pod(f"p{i}", ns, labels={"odd": str(i % 2)}))
    first = await core.list_pod_for_all_namespaces(limit=4)
    seen = [(p.metadata.namespace, p.metadata.name) for p in first.items]
    assert first.metadata.remaining_item_count == 5
    sim.delete("Pod", "a-b", "p0")  # already listed: no effect on what follows
    sim.put(o.pod("p9", "b"))  # after the boundary: shows up (a continued list reads the current state)
    token = first.metadata._continue
    while token:
        page = await core.list_pod_for_all_namespaces(limit=4, _continue=token)
        seen += [(p.metadata.namespace, p.metadata.name) for p in page.items]
        token = page.metadata._continue
    expected = [(ns, f"p{i}") for ns in ("a", "a-b", "b") for i in range(3)] + [("b", "p9")]
    assert seen == expected
    odd = await core.list_pod_for_all_namespaces(label_selector="odd=1", limit=1)
    assert [p.metadata.name for p in odd.items] == ["p1"]
    assert odd.metadata.remaining_item_count is None and odd.metadata._continue
    rest = await core.list_pod_for_all_namespaces(label_selector="odd=1", limit=1, _continue=odd.metadata._continue)
    assert [(p.metadata.namespace, p.metadata.name) for p in rest.items] == [("a-b", "p1")]
    in_ns = await core.list_namespaced_pod("a", limit=10)
    assert [p.metadata.name for p in in_ns.items] == ["p0", "p1", "p2"] and not in_ns.metadata._continue


async def test_pagination_and_expired_continue(sim: SimCluster, api: k8s.ApiClient) -> None:
    """limit/continue pages through a list; a continue token older than the history is 410 Expired."""
    core = k8s.CoreV1Api(api)
    for i in range(5):
        sim.put(o.pod(f"p{i}", "ns"))
    first = await core.list_namespaced_pod("ns", limit=2)
    names = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    while token:
        page = await core.list_namespaced_pod("ns", limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert names == [f"p{i}" for i in range(5)]
    again = await core.list_namespaced_pod("ns", limit=2)
    sim.put(o.pod("p9", "ns"))
    sim.faults.expire_history()
    with pytest.raises(k8s.ApiException) as err:
        await core.list_namespaced_pod("ns", limit=2, _continue=again.metadata._continue)
    assert err.value.status == 410
    assert json.loads(err.value.body)["reason"] == "Expired"


async def test_create_get_conflicts_and_not_found(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Create sets uid/resourceVersion/creationTimestamp; duplicates, stale replaces and misses give Status errors."""
    core = k8s.CoreV1Api(api)
    sim.put(o.namespace("shop"))
    created = await core.create_namespaced_secret("shop", o.opaque_secret("s", "shop", {"k": "v"}))
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    with pytest.raises(k8s.ApiException) as dup:
        await core.create_namespaced_secret("shop", o.opaque_secret("s", "shop"))
    assert dup.value.status == 409
    assert json.loads(dup.value.body)["reason"] == "AlreadyExists"
    fresh = await core.read_namespaced_secret("s", "shop")
    fresh.data = {"k": "dg=="}
    replaced = await core.replace_namespaced_secret("s", "shop", fresh)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(k8s.ApiException) as stale:
        await core.replace_namespaced_secret("s", "shop", fresh)  # still carries the old resourceVersion
    assert stale.value.status == 409
    assert json.loads(stale.value.body)["reason"] == "Conflict"
    with pytest.raises(k8s.ApiException) as missing:
        await core.read_namespaced_secret("nope", "shop")
    body = json.loads(missing.value.body)
    assert missing.value.status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "nope" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "nope", "kind": "secrets"},
    }
    with pytest.raises(k8s.ApiException) as no_ns:
        await core.create_namespaced_secret("ghost", o.opaque_secret("s", "ghost"))
    assert no_ns.value.status == 404


async def test_patch_formats(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Strategic merge replaces a ServiceAccount's imagePullSecrets; JSON patch appends; merge patch on leases."""
    core = k8s.CoreV1Api(api)
    sim.put(o.service_account("default", "shop", ["old"]))
    sa = await core.patch_namespaced_service_account(
        "default", "shop", {"imagePullSecrets": [{"name": "regcred"}, {"name": "old"}]}
    )
    assert [s.name for s in sa.image_pull_secrets] == ["regcred", "old"]
    sa = await core.patch_namespaced_service_account(
        "default", "shop", [{"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "third"}}]
    )
    assert [s.name for s in sa.image_pull_secrets] == ["regcred", "old", "third"]
    coord = k8s.CoordinationV1Api(api)
    await coord.create_namespaced_lease("shop", o.lease("leader", "shop", holder="a"))
    lease = await coord.patch_namespaced_lease("leader", "shop", {"spec": {"holderIdentity": "b"}})
    assert lease.spec.holder_identity == "b"
    assert lease.spec.lease_duration_seconds == 15
    merged = await coord.patch_namespaced_lease(
        "leader", "shop", {"spec": {"holderIdentity": None}}, _content_type="application/merge-patch+json"
    )
    assert merged.spec.holder_identity is None
    with pytest.raises(k8s.ApiException) as conflict:
        await coord.patch_namespaced_lease("leader", "shop", {"metadata": {"resourceVersion": "1"}})
    assert conflict.value.status == 409


async def test_strategic_merge_keys_follow_the_kind_and_path(sim: SimCluster, api: k8s.ApiClient) -> None:
    """As on a real API server: PodSpec.imagePullSecrets and containers merge by name, ServiceAccount's list is
    replaced (it has no patch merge key), ServiceAccount.secrets merges by name."""
    core = k8s.CoreV1Api(api)
    apps = k8s.AppsV1Api(api)
    sim.put(o.service_account("builder", "shop", ["existing"]))
    sa = await core.patch_namespaced_service_account("builder", "shop", {"imagePullSecrets": [{"name": "new"}]})
    assert [s.name for s in sa.image_pull_secrets] == ["new"]
    sa = await core.patch_namespaced_service_account("builder", "shop", {"secrets": [{"name": "token-a"}]})
    sa = await core.patch_namespaced_service_account("builder", "shop", {"secrets": [{"name": "token-b"}]})
    assert [s.name for s in sa.secrets] == ["token-a", "token-b"]
    deploy, _, _ = o.deployment_with_pods("web", "shop", replicas=1)
    deploy["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "existing"}]
    sim.put(deploy)
    container = deploy["spec"]["template"]["spec"]["containers"][0]["name"]
    patched = await apps.patch_namespaced_deployment(
        "web",
        "shop",
        {
            "spec": {
                "template": {
                    "spec": {
                        "imagePullSecrets": [{"name": "new"}],
                        "containers": [{"name": container, "imagePullPolicy": "IfNotPresent"}],
                    }
                }
            }
        },
    )
    pod_spec = patched.spec.template.spec
    assert [s.name for s in pod_spec.image_pull_secrets] == ["existing", "new"]
    assert [(c.name, c.image_pull_policy) for c in pod_spec.containers] == [(container, "IfNotPresent")]
    assert pod_spec.containers[0].image == "nginx:1.25"


async def test_delete_dry_run_and_replacement_pod(sim: SimCluster, api: k8s.ApiClient) -> None:
    """dryRun=All deletes nothing; deleting a ReplicaSet's pod makes the sim create a replacement."""
    core = k8s.CoreV1Api(api)
    deploy, rs, pods = o.deployment_with_pods("web", "shop", replicas=1)
    for obj in (deploy, rs, *pods):
        sim.put(obj)
    name = pods[0]["metadata"]["name"]
    rv = sim.resource_version
    dry = await core.delete_namespaced_pod(name, "shop", dry_run="All")
    assert dry.metadata.name == name
    assert sim.resource_version == rv
    assert sim.get("Pod", "shop", name) is not None
    await core.delete_namespaced_pod(name, "shop")
    assert sim.terminating("shop", name)
    sim.finish_deletion("shop", name)
    remaining = sim.list("Pod", "shop")
    assert len(remaining) == 1
    assert remaining[0]["metadata"]["name"] != name
    assert remaining[0]["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
    sim.put(o.opaque_secret("x", "shop"))
    status = await core.delete_namespaced_secret("x", "shop", dry_run="All")
    assert status.status == "Success"
    assert sim.get("Secret", "shop", "x") is not None
    await core.delete_namespaced_secret("x", "shop")
    assert sim.get("Secret", "shop", "x") is None


async def test_watch_events_and_bookmarks(sim: SimCluster, api: k8s.ApiClient) -> None:
    """A watch from a list's resourceVersion sees ADDED, MODIFIED, DELETED in order, and BOOKMARKs."""
    core = k8s.CoreV1Api(api)
    sim.put(o.namespace("ns"))
    listed = await core.list_namespaced_pod("ns")
    seen: list[tuple[str, str]] = []

    async def mutate() -> None:
        await asyncio.sleep(0.1)
        pod = sim.put(o.pod("w", "ns"))
        sim.put(o.set_waiting(pod, "app", "ErrImagePull"))
        sim.delete("Pod", "ns", "w")

    task = asyncio.create_task(mutate())
    w = watch.Watch()
    async for event in w.stream(
        core.list_namespaced_pod,
        "ns",
        resource_version=listed.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["raw_object"]["metadata"].get("name", "")))
        if event["type"] == "BOOKMARK" and len(seen) > 3:
            break
    await w.close()
    await task
    changes = [s for s in seen if s[0] != "BOOKMARK"]
    assert changes == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert ("BOOKMARK", "") in seen


async def test_watch_too_old_resource_version_is_410(sim: SimCluster, api: k8s.ApiClient) -> None:
    """After the history expires, a watch from an older resourceVersion gets an ERROR event with 410 Expired."""
    core = k8s.CoreV1Api(api)
    sim.put(o.pod("a", "ns"))
    old = str(sim.resource_version)
    sim.put(o.pod("b", "ns"))
    sim.faults.expire_history()
    resp = await core.list_namespaced_pod("ns", watch=True, resource_version=old, _preload_content=False)
    line = await resp.content.readline()
    resp.release()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(f"too old resource version: {old} (")
    with pytest.raises(k8s.ApiException) as err:
        async for _ in watch.Watch().stream(core.list_namespaced_pod, "ns", resource_version=old, timeout_seconds=1):
            pass
    assert err.value.status == 410


async def test_bounded_history_expires_by_itself() -> None:
    """With a small history limit, old resourceVersions fall out and get 410."""
    small = SimCluster(history_limit=3)
    await small.start()
    try:
        small.put(o.pod("a", "ns"))
        old = str(small.resource_version)
        for i in range(5):
            small.put(o.pod(f"p{i}", "ns"))
        headers = {"Authorization": f"Bearer {small.token}"}
        url = f"{small.url}/api/v1/pods?watch=1&resourceVersion={old}"
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(url, ssl=small.client_ssl_context()) as resp,
        ):
            event = json.loads(await resp.content.readline())
        assert event["object"]["code"] == 410
    finally:
        await small.stop()


async def test_token_required(sim: SimCluster) -> None:
    """Requests without the configured Bearer token get 401 Unauthorized."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/api/v1/pods", ssl=sim.client_ssl_context()) as resp:
            assert resp.status == 401
            assert (await resp.json())["reason"] == "Unauthorized"
        wrong = {"Authorization": "Bearer wrong"}
        async with session.get(f"{sim.url}/api/v1/pods", headers=wrong, ssl=sim.client_ssl_context()) as resp:
            assert resp.status == 401


async def test_fault_knobs(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Planned 500s and 429s (with Retry-After) hit matching paths only, then the server answers normally."""
    core = k8s.CoreV1Api(api)
    sim.put(o.namespace("ns"))
    sim.faults.fail_next(2, 500, path_prefix="/api/v1/namespaces/ns/pods")
    await core.list_namespace()  # another path: not affected
    for _ in range(2):
        with pytest.raises(k8s.ApiException) as err:
            await core.list_namespaced_pod("ns")
        assert err.value.status == 500
        assert json.loads(err.value.body)["reason"] == "InternalError"
    await core.list_namespaced_pod("ns")
    assert sim.faults.injected == 2


async def test_fault_429_has_retry_after(sim: SimCluster, api: k8s.ApiClient) -> None:
    """A 429 carries a Retry-After header and a TooManyRequests Status."""
    sim.faults.fail_next(1, 429, retry_after=3)
    with pytest.raises(k8s.ApiException) as err:
        await k8s.CoreV1Api(api).list_namespace()
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "3"
    assert json.loads(err.value.body)["reason"] == "TooManyRequests"


async def test_drop_watches_ends_streams(sim: SimCluster, api: k8s.ApiClient) -> None:
    """drop_watches() closes open watch streams; the client sees the stream end."""
    core = k8s.CoreV1Api(api)
    resp = await core.list_pod_for_all_namespaces(
        watch=True, resource_version=str(sim.resource_version), _preload_content=False
    )
    for _ in range(50):
        if sim.open_watches:
            break
        await asyncio.sleep(0.01)
    assert sim.faults.drop_watches() == 1
    rest = await asyncio.wait_for(resp.read(), 2)
    resp.release()
    assert rest == b""


async def test_latency_knob(sim: SimCluster, api: k8s.ApiClient) -> None:
    """latency_s delays answers."""
    sim.faults.latency_s = 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    await k8s.CoreV1Api(api).list_namespace()
    assert loop.time() - start >= 0.2
