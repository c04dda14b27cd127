"""A strict simulator (issue 13, point 10): what a real API server refuses, the simulator refuses too.

- field selectors: only the fields each resource's strategy makes selectable (pod strategy.go ToSelectableFields,
  event strategy.go, …), any other is 400 `field label not supported`;
- a Lease update without resourceVersion is 422 (the Lease strategy does not AllowUnconditionalUpdate);
- bookmarks come about every minute and 2 s before the watch's timeout (cacher cache_watcher.go nextBookmarkTime);
- watch history is bounded by time as well as count (etcd compaction): an old resourceVersion is 410 Gone;
- written objects are checked against the OpenAPI schema of the version /version claims (kubernetes-validate).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from bot.kube.client import load_api_client
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


async def error_of(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(k8s.ApiException) as err:
        await call
    return err.value.status, json.loads(err.value.body)


async def test_unsupported_field_selectors_are_400(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Pods select by spec.nodeName, events by involvedObject.*, reason, source, type; anything else is 400."""
    core = k8s.CoreV1Api(api)
    pod = sim.put(o.pod("a", "ns", node_name="n1"))
    sim.put(o.failed_pull_event(pod, "app"))
    assert len((await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")).items) == 1
    events = await core.list_namespaced_event(
        "ns", field_selector="involvedObject.kind=Pod,source=kubelet,type=Warning"
    )
    assert len(events.items) == 1
    for call in (
        core.list_pod_for_all_namespaces(field_selector="spec.containers.image=nginx"),
        core.list_namespaced_event("ns", field_selector="message=x"),
        core.list_namespaced_pod("ns", field_selector="status.phase=Running,metadata.labels=x", watch=True),
        core.list_namespaced_secret("ns", field_selector="data=x"),
    ):
        status, body = await error_of(call)
        assert status == 400 and body["reason"] == "BadRequest"
        assert body["message"].startswith("field label not supported: ")


async def test_lease_update_without_resource_version_is_422(sim: SimCluster, api: k8s.ApiClient) -> None:
    """PUT of a Lease must carry the resourceVersion it read."""
    coord = k8s.CoordinationV1Api(api)
    sim.put(o.namespace("ns"))
    created = await coord.create_namespaced_lease("ns", o.lease("l", "ns", holder="a"))
    body = api.sanitize_for_serialization(created)
    del body["metadata"]["resourceVersion"]
    status, err = await error_of(coord.replace_namespaced_lease("l", "ns", body))
    assert status == 422 and err["reason"] == "Invalid"
    assert "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update" in err["message"]
    body["metadata"]["resourceVersion"] = created.metadata.resource_version
    await coord.replace_namespaced_lease("l", "ns", body)


async def test_bookmarks_every_interval_and_before_the_timeout() -> None:
    """By default (a minute) the only bookmark of a 3 s watch comes 2 s before its end; a short interval adds more."""
    for interval, expected in ((60.0, 1), (0.4, 3)):
        sim = SimCluster(bookmark_interval_s=interval)
        await sim.start()
        try:
            sim.put(o.namespace("ns"))
            url = f"{sim.url}/api/v1/namespaces/ns/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=3"
            url += f"&resourceVersion={sim.resource_version}"
            headers = {"Authorization": f"Bearer {sim.token}"}
            started = time.monotonic()
            at: list[float] = []
            async with (
                aiohttp.ClientSession(headers=headers) as session,
                session.get(url, ssl=sim.client_ssl_context()) as resp,
            ):
                async for line in resp.content:
                    if json.loads(line)["type"] == "BOOKMARK":
                        at.append(time.monotonic() - started)
            assert len(at) >= expected, (interval, at)
            assert 0.8 <= at[-1] <= 1.6, at  # the pre-timeout bookmark, 2 s before the 3 s deadline
            if interval == 60.0:
                assert len(at) == 1
        finally:
            await sim.stop()


async def test_watch_history_is_bounded_by_time(tmp_path: Path) -> None:
    """A resourceVersion older than the history window is 410 Gone, however few events followed it."""
    sim = SimCluster(history_window_s=0.3)
    await sim.start()
    try:
        sim.put(o.pod("a", "ns"))
        old = str(sim.resource_version)
        sim.put(o.pod("b", "ns"))
        await asyncio.sleep(0.5)
        sim.put(o.pod("c", "ns"))
        path = sim.write_kubeconfig(tmp_path / "kc")
        async with await load_api_client(KubeSettings(kubeconfig=path)) as api:
            core = k8s.CoreV1Api(api)
            with pytest.raises(k8s.ApiException) as err:
                async for _ in watch.Watch().stream(
                    core.list_namespaced_pod, "ns", resource_version=old, timeout_seconds=1
                ):
                    pass
            assert err.value.status == 410
    finally:
        await sim.stop()


async def test_objects_are_checked_against_the_openapi_schema(sim: SimCluster, api: k8s.ApiClient) -> None:
    """A wrong type is 400 (decoding), a missing required field 422 (validation)."""
    core = k8s.CoreV1Api(api)
    sim.put(o.namespace("ns"))
    pod = o.pod("p", "ns")
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
    status, err = await error_of(core.create_namespaced_pod("ns", pod))
    assert status == 400 and err["reason"] == "BadRequest"
    assert "cannot unmarshal string into Go struct field Pod.spec.containers.ports.containerPort" in err["message"]
    del pod["spec"]["containers"][0]["ports"]
    del pod["spec"]["containers"][0]["name"]
    status, err = await error_of(core.create_namespaced_pod("ns", pod))
    assert status == 422 and err["reason"] == "Invalid"
    assert err["message"] == 'Pod "p" is invalid: spec.containers[0].name: Required value'
    assert sim.get("Pod", "ns", "p") is None
