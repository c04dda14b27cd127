"""The simulator validates Secrets as kube-apiserver does (issue 13, point 7).

pkg/apis/core/validation/validation.go: ValidateSecret requires data[.dockerconfigjson] for
`kubernetes.io/dockerconfigjson` and data[.dockercfg] for `kubernetes.io/dockercfg` (well-formed JSON);
ValidateSecretUpdate keeps `type` immutable and, once `immutable: true`, `data` and `immutable` too. 422 Invalid.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


def body(type_: str, data: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        **extra,
    }


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        ("kubernetes.io/dockerconfigjson", {"config.json": "{}"}, "data[.dockerconfigjson]"),
        ("kubernetes.io/dockercfg", {".dockerconfigjson": "{}"}, "data[.dockercfg]"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "not json"}, "data[.dockerconfigjson]"),
    ],
)
async def test_docker_secret_types_need_their_key(
    sim: SimCluster, api: k8s.ApiClient, type_: str, data: dict[str, str], field: str
) -> None:
    """A docker config Secret without its key (or with a non-JSON one) is 422 Invalid naming the field."""
    sim.put(o.namespace("ns"))
    with pytest.raises(k8s.ApiException) as err:
        await k8s.CoreV1Api(api).create_namespaced_secret("ns", body(type_, data))
    assert err.value.status == 422
    status = json.loads(err.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'Secret "s" is invalid: {field}: ')
    assert status["details"]["causes"][0]["field"] == field
    assert "not json" not in status["message"]  # contents are redacted
    assert sim.get("Secret", "ns", "s") is None


async def test_immutable_secret_data_and_type_cannot_change(sim: SimCluster, api: k8s.ApiClient) -> None:
    """Changing data of an immutable Secret, or any Secret's type, is 422; the same data is fine."""
    core = k8s.CoreV1Api(api)
    sim.put(o.namespace("ns"))
    await core.create_namespaced_secret("ns", body("Opaque", {"a": "1"}, immutable=True))
    with pytest.raises(k8s.ApiException) as err:
        await core.patch_namespaced_secret("s", "ns", {"data": {"a": base64.b64encode(b"2").decode()}})
    assert err.value.status == 422
    assert "data: Forbidden: field is immutable when `immutable` is set" in json.loads(err.value.body)["message"]
    await core.patch_namespaced_secret("s", "ns", {"metadata": {"labels": {"x": "y"}}})  # metadata may change
    await core.create_namespaced_secret("ns", {**body("Opaque", {"a": "1"}), "metadata": {"name": "t"}})
    with pytest.raises(k8s.ApiException) as err:
        await core.patch_namespaced_secret(
            "t", "ns", {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": "e30="}}
        )
    assert err.value.status == 422
    assert 'type: Invalid value: "kubernetes.io/dockercfg": field is immutable' in json.loads(err.value.body)["message"]
