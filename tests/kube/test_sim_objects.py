"""Object builders produce the shapes and texts of real clusters."""

from __future__ import annotations

import base64
import json

import pytest

from testkit.kube import objects as o


def _decoded(secret: dict[str, object], key: str) -> object:
    data = secret["data"]
    assert isinstance(data, dict)
    return json.loads(base64.b64decode(data[key]))


def test_dockerconfigjson_secret() -> None:
    """A docker-registry secret holds base64 .dockerconfigjson with auths and a user:password auth field."""
    secret = o.docker_config_secret("regcred", "shop", {"ghcr.io": {"username": "bot", "password": "pw"}})
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = _decoded(secret, ".dockerconfigjson")
    assert config == {"auths": {"ghcr.io": {"username": "bot", "password": "pw", "auth": "Ym90OnB3"}}}


def test_legacy_dockercfg_and_malformed() -> None:
    """Legacy .dockercfg has no auths wrapper; `raw` writes arbitrary (malformed) content."""
    legacy = o.docker_config_secret("old", "shop", {"quay.io": {"username": "u", "password": "p"}}, legacy=True)
    assert legacy["type"] == "kubernetes.io/dockercfg"
    assert set(_decoded(legacy, ".dockercfg")) == {"quay.io"}  # type: ignore[arg-type]
    broken = o.docker_config_secret("bad", "shop", raw="{not json")
    assert base64.b64decode(broken["data"][".dockerconfigjson"]) == b"{not json"


@pytest.mark.parametrize(
    ("image", "ref"),
    [
        ("nginx:1.99", "docker.io/library/nginx:1.99"),
        ("nginx", "docker.io/library/nginx:latest"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
    ],
)
def test_containerd_ref(image: str, ref: str) -> None:
    """Short names are expanded as containerd prints them."""
    assert o.containerd_ref(image) == ref


def test_kubelet_messages() -> None:
    """Waiting messages and Failed events read as kubelet writes them."""
    assert o.kubelet_waiting_message("ImagePullBackOff", "nginx:1.99") == 'Back-off pulling image "nginx:1.99"'
    assert o.kubelet_waiting_message("ErrImagePull", "nginx:1.99") == (
        'failed to pull and unpack image "docker.io/library/nginx:1.99": failed to resolve reference '
        '"docker.io/library/nginx:1.99": docker.io/library/nginx:1.99: not found'
    )
    assert o.kubelet_waiting_message("ErrImageNeverPull", "app:1") == (
        'Container image "app:1" is not present with pull policy of Never'
    )
    pod = o.pod("p", "shop", "nginx:1.99", waiting={"app": ("ErrImagePull", None)})
    event = o.failed_pull_event(pod, "app")
    assert event["message"].startswith('Failed to pull image "nginx:1.99": failed to pull and unpack image')
    assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "Failed", 1)
    reasons = [e["reason"] for e in o.pull_events(pod, "app")]
    assert reasons == ["Pulling", "Failed", "Failed", "BackOff", "Failed"]


def test_pod_status_shapes() -> None:
    """A blocked init container leaves the main containers PodInitializing and the pod Pending."""
    pod = o.pod(
        "p",
        "shop",
        containers=[o.container("app", "nginx:1.25")],
        init_containers=[o.container("setup", "busybox:9")],
        waiting={"setup": ("ImagePullBackOff", None)},
    )
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    running = o.set_running(pod, "setup")
    assert "terminated" in running["status"]["initContainerStatuses"][0]["state"]


def test_deployment_chain() -> None:
    """deployment -> replicaset -> pods carry controller ownerReferences and the pod-template-hash label."""
    deploy, rs, pods = o.deployment_with_pods("web", "shop", replicas=2, waiting_reason="ErrImagePull")
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
    for pod in pods:
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("ReplicaSet", rs["metadata"]["name"], True)
        assert pod["metadata"]["labels"]["pod-template-hash"] == template_hash
        assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"


def test_node_disk_pressure() -> None:
    """A node under disk pressure has the condition True and the NoSchedule taint."""
    node = o.node("n", arch="arm64", disk_pressure=True)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["DiskPressure"] == "True"
    assert node["status"]["nodeInfo"]["architecture"] == "arm64"
    assert node["spec"]["taints"][0]["key"] == "node.kubernetes.io/disk-pressure"
