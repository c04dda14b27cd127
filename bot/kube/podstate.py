"""Pure reading of pod and event dicts (API JSON): which containers wait on an image pull, and what events say."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot.model import PULL_WAITING_REASONS

# (spec key, status key, container_kind) for the three container kinds of a pod.
CONTAINER_KINDS: tuple[tuple[str, str, str], ...] = (
    ("initContainers", "initContainerStatuses", "init"),
    ("containers", "containerStatuses", "container"),
    ("ephemeralContainers", "ephemeralContainerStatuses", "ephemeral"),
)

_FIELD_PATH = re.compile(r"^spec\.(containers|initContainers|ephemeralContainers)\{(.+)\}$")
_FIELD_KIND = {"containers": "container", "initContainers": "init", "ephemeralContainers": "ephemeral"}
_GENERIC_BACKOFF = re.compile(r'^Back-off pulling image "[^"]*"$')
_PULL_PREFIX = re.compile(r'^Failed to pull image "[^"]*": ')
_RPC_PREFIX = re.compile(r"^rpc error: code = \w+ desc = ")


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container of a pod: spec image and the waiting reason/message of its current state, if waiting."""

    name: str
    kind: str  # "container" | "init" | "ephemeral"
    image: str
    state: str | None  # "waiting" | "running" | "terminated" | None (no status yet)
    waiting_reason: str | None = None
    waiting_message: str = ""
    status_image: str = ""  # the image the status reports; lags behind the spec right after an image change


def containers(pod: Mapping[str, Any]) -> Iterator[ContainerView]:
    """Every container of the pod (init, regular, ephemeral) with the state its status reports."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    for spec_key, status_key, kind in CONTAINER_KINDS:
        statuses = {s.get("name"): s for s in status.get(status_key) or []}
        for c in spec.get(spec_key) or []:
            name = str(c.get("name", ""))
            st = statuses.get(name) or {}
            state = st.get("state") or {}
            if "waiting" in state:
                waiting = state["waiting"] or {}
                yield ContainerView(
                    name,
                    kind,
                    str(c.get("image", "")),
                    "waiting",
                    waiting.get("reason"),
                    str(waiting.get("message") or ""),
                    str(st.get("image") or ""),
                )
            elif "running" in state:
                yield ContainerView(name, kind, str(c.get("image", "")), "running")
            elif "terminated" in state:
                yield ContainerView(name, kind, str(c.get("image", "")), "terminated")
            else:
                yield ContainerView(name, kind, str(c.get("image", "")), None)


def _short(image: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if image.startswith(prefix):
            return image[len(prefix) :]
    return image


def pull_waits(pod: Mapping[str, Any]) -> list[ContainerView]:
    """The containers of the pod that wait with one of the image pull reasons.

    A wait whose status still names another image than the spec is stale (the image was just changed) and is skipped.
    """
    return [
        c
        for c in containers(pod)
        if c.state == "waiting"
        and c.waiting_reason in PULL_WAITING_REASONS
        and (not c.status_image or _short(c.status_image) == _short(c.image))
    ]


def field_path_container(field_path: str | None) -> tuple[str, str] | None:
    """`spec.initContainers{setup}` -> ("init", "setup"); None for pod-level events."""
    if not field_path:
        return None
    m = _FIELD_PATH.match(field_path)
    if m is None:
        return None
    return _FIELD_KIND[m.group(1)], m.group(2)


def is_generic_backoff(message: str) -> bool:
    """True when an ImagePullBackOff message names only the image (older kubelets), not the error."""
    return not message or bool(_GENERIC_BACKOFF.match(message))


def is_pull_error_event(reason: str | None, message: str | None) -> bool:
    """kubelet's `Failed` event that carries the runtime's pull error (not `Error: ErrImagePull`)."""
    return reason == "Failed" and bool(message) and str(message).startswith("Failed to pull image ")


def error_text(message: str) -> str:
    """The runtime's error inside a message, for comparing a waiting message with a Failed event's."""
    text = _PULL_PREFIX.sub("", message.strip())
    return _RPC_PREFIX.sub("", text)


def controller_owner(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReferences entry with controller: true (or the first one), or None for a bare pod."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


def deployment_name_guess(replicaset: str, labels: Mapping[str, str]) -> str | None:
    """The Deployment name a ReplicaSet name implies: `<deployment>-<pod-template-hash>`, else None."""
    template_hash = labels.get("pod-template-hash")
    if template_hash and replicaset.endswith(f"-{template_hash}"):
        return replicaset[: -len(template_hash) - 1]
    return None
