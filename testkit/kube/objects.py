"""Builders of Kubernetes objects in the JSON shapes real clusters return, for the simulator, tests and the demo.

Shapes follow `kubectl get -o json` output of real objects. Sources consulted for field sets and message texts:
- pod containerStatuses waiting on ImagePullBackOff with `Back-off pulling image "<image>"`
  (podman-desktop/podman-desktop issue #7521, kubernetes/kubernetes issue #48188);
- kubelet events (`reason: Failed`, `involvedObject.fieldPath: spec.containers{name}`, `source.component: kubelet`,
  `count`, `firstTimestamp`/`lastTimestamp`: UKHomeOffice/kb8or issue #68; `Failed to pull image "X": rpc error: code =
  Unknown desc = failed to pull and unpack image ...`: kubernetes/kube-state-metrics issue #1588,
  pfnet/image-pull-secrets-provisioner issue #31);
- containerd error texts after `failed to pull and unpack image "<ref>": ` (docs/DEVELOPMENT.md, seen here with
  containerd 1.6 over CRI).
Every builder returns a fresh dict with a uid already set, so owners can be referenced before they are stored.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

# Kubernetes' rand.SafeEncodeString alphabet (no vowels, no confusable digits): pod-template-hash and name suffixes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(n: int = 5) -> str:
    return "".join(random.choice(_SAFE) for _ in range(n))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, namespace: str | None, labels: Mapping[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now()}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def owner_reference(owner: Obj, controller: bool = True) -> Obj:
    """An ownerReferences entry pointing at `owner` (as controllers write them)."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


# ---- cluster-level objects ----


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    """A Namespace."""
    all_labels = {"kubernetes.io/metadata.name": name, **(labels or {})}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(name, None, all_labels),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node(name: str = "node-1", arch: str = "amd64", os: str = "linux", disk_pressure: bool = False) -> Obj:
    """A Node with nodeInfo, kubernetes.io/arch and os labels, and a DiskPressure condition (and taint)."""
    now = _now()
    conditions = [
        {
            "type": "MemoryPressure",
            "status": "False",
            "reason": "KubeletHasSufficientMemory",
            "message": "kubelet has sufficient memory available",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
        {
            "type": "DiskPressure",
            "status": "True" if disk_pressure else "False",
            "reason": "KubeletHasDiskPressure" if disk_pressure else "KubeletHasNoDiskPressure",
            "message": "kubelet has disk pressure" if disk_pressure else "kubelet has no disk pressure",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
        {
            "type": "PIDPressure",
            "status": "False",
            "reason": "KubeletHasSufficientPID",
            "message": "kubelet has sufficient PID available",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
    ]
    spec: Obj = {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    if disk_pressure:
        spec["taints"] = [{"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule", "timeAdded": now}]
    labels = {
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": os,
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": os,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(name, None, labels),
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.4"}, {"type": "Hostname", "address": name}],
            "allocatable": {"cpu": "2", "ephemeral-storage": "95491281146", "memory": "8030820Ki", "pods": "110"},
            "capacity": {"cpu": "2", "ephemeral-storage": "103615464Ki", "memory": "8133220Ki", "pods": "110"},
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch,
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "containerd://1.7.13",
                "kernelVersion": "6.1.0-18-cloud-amd64",
                "kubeProxyVersion": "v1.31.0",
                "kubeletVersion": "v1.31.0",
                "machineID": uuid.uuid4().hex,
                "operatingSystem": os,
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }


# ---- service accounts and pull secrets ----


def service_account(name: str = "default", namespace: str = "default", image_pull_secrets: Iterable[str] = ()) -> Obj:
    """A ServiceAccount, optionally listing imagePullSecrets by name."""
    sa: Obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)}
    secrets = list(image_pull_secrets)
    if secrets:
        sa["imagePullSecrets"] = [{"name": s} for s in secrets]
    return sa


def _auth_entry(entry: Mapping[str, str]) -> dict[str, str]:
    out = dict(entry)
    if "auth" not in out and "username" in out and "password" in out:
        out["auth"] = base64.b64encode(f"{out['username']}:{out['password']}".encode()).decode()
    return out


def docker_config_secret(
    name: str,
    namespace: str = "default",
    auths: Mapping[str, Mapping[str, str]] | None = None,
    legacy: bool = False,
    raw: str | None = None,
) -> Obj:
    """A pull secret as `kubectl create secret docker-registry` writes it.

    `auths` maps registry host to {"username", "password"} (an "auth" field is added) or to raw entry fields.
    `legacy=True` writes the old `.dockercfg` form (type kubernetes.io/dockercfg, no "auths" wrapper).
    `raw` puts that exact text in the data key instead, to make a malformed secret.
    """
    entries = {host: _auth_entry(entry) for host, entry in (auths or {}).items()}
    if legacy:
        key, type_ = ".dockercfg", "kubernetes.io/dockercfg"
        payload = raw if raw is not None else json.dumps(entries)
    else:
        key, type_ = ".dockerconfigjson", "kubernetes.io/dockerconfigjson"
        payload = raw if raw is not None else json.dumps({"auths": entries})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace),
        "type": type_,
        "data": {key: base64.b64encode(payload.encode()).decode()},
    }


def opaque_secret(name: str, namespace: str = "default", data: Mapping[str, str] | None = None) -> Obj:
    """An Opaque Secret with string values (stored base64 as the API does)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in (data or {}).items()},
    }


# ---- kubelet messages ----


def containerd_ref(image: str) -> str:
    """The fully qualified reference containerd prints for an image ("nginx:1.99" -> "docker.io/library/nginx:1.99")."""
    name, sep_digest, digest = image.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if not sep_digest and ":" not in last:
        name += ":latest"
    return name + (f"@{digest}" if sep_digest else "")


def pull_error(image: str, detail: str | None = None) -> str:
    """containerd's pull error text; `detail` is what follows `failed to pull and unpack image "<ref>": `.

    Default: the tag (or repository) does not exist.
    """
    ref = containerd_ref(image)
    if detail is None:
        detail = f'failed to resolve reference "{ref}": {ref}: not found'
    return f'failed to pull and unpack image "{ref}": {detail}'


def kubelet_waiting_message(reason: str, image: str, error: str | None = None) -> str:
    """The waiting message kubelet writes for a pull waiting reason.

    ErrImagePull carries the runtime's error text; ImagePullBackOff only says `Back-off pulling image "<image>"`;
    InvalidImageName names the parse failure; ErrImageNeverPull says the image is absent with policy Never.
    """
    if reason == "ErrImagePull":
        return error if error is not None else pull_error(image)
    if reason == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    if reason == "InvalidImageName":
        return (
            f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": '
            "invalid reference format: repository name must be lowercase"
            if error is None
            else error
        )
    if reason == "ErrImageNeverPull":
        return f'Container image "{image}" is not present with pull policy of Never'
    return error or ""


# ---- containers and pods ----


def container(name: str, image: str, pull_policy: str = "IfNotPresent") -> Obj:
    """A container spec as the API server defaults it."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def waiting_status(name: str, image: str, reason: str, message: str | None = None) -> Obj:
    """A containerStatuses entry waiting with `reason`; the message defaults to kubelet's text for it."""
    waiting: Obj = {"reason": reason}
    text = message if message is not None else kubelet_waiting_message(reason, image)
    if text:
        waiting["message"] = text
    return {
        "image": image,
        "imageID": "",
        "lastState": {},
        "name": name,
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"waiting": waiting},
    }


def running_status(name: str, image: str) -> Obj:
    """A containerStatuses entry of a running container."""
    repo = containerd_ref(image).split("@")[0].rsplit(":", 1)[0]
    return {
        "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "image": containerd_ref(image),
        "imageID": f"{repo}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "lastState": {},
        "name": name,
        "ready": True,
        "restartCount": 0,
        "started": True,
        "state": {"running": {"startedAt": _now()}},
    }


def terminated_status(name: str, image: str, exit_code: int = 0) -> Obj:
    """A containerStatuses entry of a finished container (init containers end Completed)."""
    now = _now()
    return {
        "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "image": containerd_ref(image),
        "imageID": "",
        "lastState": {},
        "name": name,
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": now,
                "finishedAt": now,
            }
        },
    }


_STATUS_KEYS = {
    "container": ("containers", "containerStatuses"),
    "init": ("initContainers", "initContainerStatuses"),
    "ephemeral": ("ephemeralContainers", "ephemeralContainerStatuses"),
}


def pod(
    name: str,
    namespace: str = "default",
    image: str = "nginx:1.25",
    *,
    containers: Iterable[Obj] | None = None,
    init_containers: Iterable[Obj] = (),
    ephemeral_containers: Iterable[Obj] = (),
    node_name: str | None = "node-1",
    owner: Obj | None = None,
    labels: Mapping[str, str] | None = None,
    service_account_name: str = "default",
    image_pull_secrets: Iterable[str] = (),
    waiting: Mapping[str, tuple[str, str | None]] | None = None,
) -> Obj:
    """A scheduled pod; every container runs (init containers completed) unless `waiting` names it.

    `waiting` maps a container name (of any kind) to (waiting reason, message or None for kubelet's default text).
    """
    conts = [copy.deepcopy(c) for c in containers] if containers is not None else [container("app", image)]
    inits = [copy.deepcopy(c) for c in init_containers]
    ephs = [copy.deepcopy(c) for c in ephemeral_containers]
    for eph in ephs:
        eph.pop("resources", None)
    waiting = dict(waiting or {})
    meta = _meta(name, namespace, labels)
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
        meta["generateName"] = name.rsplit("-", 1)[0] + "-"
    spec: Obj = {
        "containers": conts,
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccount": service_account_name,
        "serviceAccountName": service_account_name,
        "terminationGracePeriodSeconds": 30,
        "tolerations": [
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
        ],
    }
    if inits:
        spec["initContainers"] = inits
    if ephs:
        spec["ephemeralContainers"] = ephs
    if node_name:
        spec["nodeName"] = node_name
    secrets = list(image_pull_secrets)
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    obj: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {}}
    init_blocked = any(c["name"] in waiting for c in inits)
    for kind, (spec_key, status_key) in _STATUS_KEYS.items():
        statuses = []
        for c in spec.get(spec_key, []):
            if c["name"] in waiting:
                reason, message = waiting[c["name"]]
                statuses.append(waiting_status(c["name"], c["image"], reason, message))
            elif kind == "init":
                statuses.append(terminated_status(c["name"], c["image"]))
            elif kind == "container" and init_blocked:
                statuses.append(waiting_status(c["name"], c["image"], "PodInitializing", ""))
            else:
                statuses.append(running_status(c["name"], c["image"]))
        if statuses:
            obj["status"][status_key] = statuses
    _refresh_pod_status(obj)
    return obj


def _refresh_pod_status(obj: Obj) -> None:
    status = obj["status"]
    all_running = all("running" in s["state"] for s in status.get("containerStatuses", []))
    now = _now()
    status["phase"] = "Running" if all_running and obj["spec"].get("nodeName") else "Pending"
    ready = "True" if all_running else "False"
    status["conditions"] = [
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
        {"type": "Ready", "status": ready, "lastProbeTime": None, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": ready, "lastProbeTime": None, "lastTransitionTime": now},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
    ]
    if obj["spec"].get("nodeName"):
        status.update(
            {
                "hostIP": "10.0.0.4",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}],
                "qosClass": "BestEffort",
                "startTime": obj["metadata"]["creationTimestamp"],
            }
        )


def _find_status(obj: Obj, name: str) -> tuple[Obj, Obj]:
    for spec_key, status_key in _STATUS_KEYS.values():
        for spec_c in obj["spec"].get(spec_key, []):
            if spec_c["name"] == name:
                for st in obj["status"].get(status_key, []):
                    if st["name"] == name:
                        return spec_c, st
                st = {"name": name}
                obj["status"].setdefault(status_key, []).append(st)
                return spec_c, st
    raise KeyError(name)


def set_waiting(obj: Obj, container_name: str, reason: str, message: str | None = None) -> Obj:
    """A copy of the pod whose container (any kind) now waits with `reason` (kubelet's text unless `message`)."""
    new = copy.deepcopy(obj)
    spec_c, st = _find_status(new, container_name)
    st.clear()
    st.update(waiting_status(container_name, spec_c["image"], reason, message))
    _refresh_pod_status(new)
    return new


def set_running(obj: Obj, container_name: str) -> Obj:
    """A copy of the pod whose container now runs (an init container: has completed)."""
    new = copy.deepcopy(obj)
    spec_c, st = _find_status(new, container_name)
    init = any(c["name"] == container_name for c in new["spec"].get("initContainers", []))
    st.clear()
    st.update(
        terminated_status(container_name, spec_c["image"]) if init else running_status(container_name, spec_c["image"])
    )
    _refresh_pod_status(new)
    return new


def set_image(obj: Obj, container_name: str, image: str) -> Obj:
    """A copy of the pod whose container's spec image is changed (its status still shows the old state)."""
    new = copy.deepcopy(obj)
    spec_c, _st = _find_status(new, container_name)
    spec_c["image"] = image
    return new


# ---- workloads and their pods ----


def _template(name: str, image: str, labels: Mapping[str, str]) -> Obj:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {"containers": [container(name, image)], "restartPolicy": "Always"},
    }


def deployment(name: str, namespace: str = "default", image: str = "nginx:1.25", replicas: int = 1) -> Obj:
    """A Deployment selecting app=<name>."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": _template(name, image, labels),
        },
        "status": {},
    }


def replicaset(deploy: Obj, template_hash: str | None = None) -> Obj:
    """The ReplicaSet a Deployment controller makes: `<deployment>-<pod-template-hash>`, owned by the Deployment."""
    template_hash = template_hash or _suffix(10)
    dname = deploy["metadata"]["name"]
    labels = {**deploy["spec"]["selector"]["matchLabels"], "pod-template-hash": template_hash}
    template = copy.deepcopy(deploy["spec"]["template"])
    template["metadata"]["labels"] = labels
    meta = _meta(f"{dname}-{template_hash}", deploy["metadata"]["namespace"], labels)
    meta["ownerReferences"] = [owner_reference(deploy)]
    meta["annotations"] = {
        "deployment.kubernetes.io/desired-replicas": str(deploy["spec"]["replicas"]),
        "deployment.kubernetes.io/max-replicas": str(deploy["spec"]["replicas"] + 1),
        "deployment.kubernetes.io/revision": "1",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {"replicas": deploy["spec"]["replicas"], "selector": {"matchLabels": labels}, "template": template},
        "status": {"replicas": deploy["spec"]["replicas"], "observedGeneration": 1},
    }


def statefulset(name: str, namespace: str = "default", image: str = "nginx:1.25", replicas: int = 1) -> Obj:
    """A StatefulSet selecting app=<name>."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "podManagementPolicy": "OrderedReady",
            "template": _template(name, image, labels),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        },
        "status": {},
    }


def daemonset(name: str, namespace: str = "default", image: str = "nginx:1.25") -> Obj:
    """A DaemonSet selecting app=<name>."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "template": _template(name, image, labels),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        },
        "status": {},
    }


def cronjob(name: str, namespace: str = "default", image: str = "busybox:1.36", schedule: str = "*/5 * * * *") -> Obj:
    """A CronJob."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(name, namespace),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Allow",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [container(name, image)], "restartPolicy": "OnFailure"}}}
            },
        },
        "status": {},
    }


def job(name: str, namespace: str = "default", image: str = "busybox:1.36", owner: Obj | None = None) -> Obj:
    """A Job; with a CronJob `owner` it is named `<cronjob>-<scheduled minute>` as the CronJob controller does."""
    if owner is not None:
        name = f"{owner['metadata']['name']}-{int(datetime.now(UTC).timestamp()) // 60}"
    meta = _meta(name, namespace)
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    pod_spec: Obj = {"containers": [container(name, image)], "restartPolicy": "OnFailure"}
    if owner is not None and owner.get("kind") == "CronJob":
        pod_spec = copy.deepcopy(owner["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    labels = {
        "batch.kubernetes.io/job-name": name,
        "job-name": name,
        "batch.kubernetes.io/controller-uid": meta["uid"],
        "controller-uid": meta["uid"],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 6,
            "completions": 1,
            "parallelism": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
        "status": {},
    }


def pod_for(
    owner: Obj,
    index: int = 0,
    waiting: Mapping[str, tuple[str, str | None]] | None = None,
    image: str | None = None,
    **kwargs: Any,
) -> Obj:
    """A pod the owner's controller would create: its name pattern, labels and a controller ownerReference.

    Works for ReplicaSet, StatefulSet, DaemonSet and Job owners; `image` overrides the template's image.
    """
    kind = owner["kind"]
    oname = owner["metadata"]["name"]
    tmpl = owner["spec"]["template"]
    labels = dict(tmpl.get("metadata", {}).get("labels", {}))
    conts = copy.deepcopy(tmpl["spec"]["containers"])
    if image is not None:
        for c in conts:
            c["image"] = image
    if kind == "StatefulSet":
        name = f"{oname}-{index}"
        labels.update(
            {
                "controller-revision-hash": f"{oname}-{_suffix(10)}",
                "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": str(index),
            }
        )
    elif kind == "DaemonSet":
        name = f"{oname}-{_suffix(5)}"
        labels.update({"controller-revision-hash": _suffix(10), "pod-template-generation": "1"})
    else:
        name = f"{oname}-{_suffix(5)}"
    return pod(
        name, owner["metadata"]["namespace"], containers=conts, owner=owner, labels=labels, waiting=waiting, **kwargs
    )


def deployment_with_pods(
    name: str,
    namespace: str = "default",
    image: str = "nginx:1.25",
    replicas: int = 1,
    waiting_reason: str | None = None,
    message: str | None = None,
) -> tuple[Obj, Obj, list[Obj]]:
    """A Deployment, its ReplicaSet and `replicas` pods; with `waiting_reason` the pods' container waits on the pull."""
    deploy = deployment(name, namespace, image, replicas)
    rs = replicaset(deploy)
    waiting = {name: (waiting_reason, message)} if waiting_reason else None
    pods = [pod_for(rs, i, waiting=waiting) for i in range(replicas)]
    return deploy, rs, pods


# ---- events ----

_FIELD_PATHS = {"container": "spec.containers", "init": "spec.initContainers", "ephemeral": "spec.ephemeralContainers"}


def event(
    involved: Obj,
    reason: str,
    message: str,
    container_name: str | None = None,
    container_kind: str = "container",
    type_: str = "Warning",
    count: int = 1,
) -> Obj:
    """A core/v1 Event as kubelet records it about a pod (fieldPath `spec.containers{name}` when about a container)."""
    meta = involved["metadata"]
    now = _now()
    obj_ref: Obj = {
        "apiVersion": involved.get("apiVersion", "v1"),
        "kind": involved.get("kind", "Pod"),
        "name": meta["name"],
        "namespace": meta.get("namespace", "default"),
        "uid": meta.get("uid", ""),
    }
    if meta.get("resourceVersion"):
        obj_ref["resourceVersion"] = meta["resourceVersion"]
    if container_name:
        obj_ref["fieldPath"] = f"{_FIELD_PATHS[container_kind]}{{{container_name}}}"
    host = (involved.get("spec") or {}).get("nodeName") or "node-1"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{uuid.uuid4().int & (2**64 - 1):x}",
            "namespace": meta.get("namespace", "default"),
            "uid": str(uuid.uuid4()),
            "creationTimestamp": now,
        },
        "involvedObject": obj_ref,
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": host},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": host,
    }


def failed_pull_event(
    pod_obj: Obj,
    container_name: str,
    error: str | None = None,
    container_kind: str = "container",
    image: str | None = None,
    count: int = 1,
) -> Obj:
    """kubelet's `Failed` event: `Failed to pull image "<image>": <runtime error>`."""
    if image is None:
        image = _image_of(pod_obj, container_name)
    text = error if error is not None else pull_error(image)
    return event(
        pod_obj, "Failed", f'Failed to pull image "{image}": {text}', container_name, container_kind, count=count
    )


def pull_events(
    pod_obj: Obj, container_name: str, error: str | None = None, container_kind: str = "container"
) -> list[Obj]:
    """The events kubelet emits around one failing pull: Pulling, Failed (error), Failed (Error: ErrImagePull),
    BackOff and Failed (Error: ImagePullBackOff)."""
    image = _image_of(pod_obj, container_name)
    return [
        event(pod_obj, "Pulling", f'Pulling image "{image}"', container_name, container_kind, "Normal"),
        failed_pull_event(pod_obj, container_name, error, container_kind, image),
        event(pod_obj, "Failed", "Error: ErrImagePull", container_name, container_kind),
        event(pod_obj, "BackOff", f'Back-off pulling image "{image}"', container_name, container_kind, "Normal"),
        event(pod_obj, "Failed", "Error: ImagePullBackOff", container_name, container_kind),
    ]


def missing_pull_secret_event(pod_obj: Obj, secrets: Iterable[str]) -> Obj:
    """kubelet's pod-level `FailedToRetrieveImagePullSecret` warning."""
    names = ", ".join(secrets)
    return event(
        pod_obj,
        "FailedToRetrieveImagePullSecret",
        f"Unable to retrieve some image pull secrets ({names}); attempting to pull the image may not succeed.",
    )


def _image_of(pod_obj: Obj, container_name: str) -> str:
    for spec_key, _ in _STATUS_KEYS.values():
        for c in pod_obj["spec"].get(spec_key, []):
            if c["name"] == container_name:
                return str(c["image"])
    raise KeyError(container_name)


# ---- coordination ----


def lease(name: str, namespace: str = "default", holder: str | None = None, duration_s: int = 15) -> Obj:
    """A coordination.k8s.io/v1 Lease as leader election writes it."""
    spec: Obj = {"leaseDurationSeconds": duration_s}
    if holder:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec.update({"holderIdentity": holder, "acquireTime": now, "renewTime": now, "leaseTransitions": 0})
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": _meta(name, namespace), "spec": spec}
