"""Pure reading of pod and event dicts (API JSON): which containers wait on an image pull, and what events say."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot import imageref
from bot.model import PULL_WAITING_REASONS

# (spec key, status key, container_kind) for the three container kinds of a pod.
CONTAINER_KINDS: tuple[tuple[str, str, str], ...] = (
    ("initContainers", "initContainerStatuses", "init"),
    ("containers", "containerStatuses", "container"),
    ("ephemeralContainers", "ephemeralContainerStatuses", "ephemeral"),
)

_FIELD_PATH = re.compile(r"^spec\.(containers|initContainers|ephemeralContainers)\{(.+)\}$")
_FIELD_KIND = {"containers": "container", "initContainers": "init", "ephemeralContainers": "ephemeral"}
# kubelet's back-off text (pkg/kubelet/images/image_manager.go): `Back-off pulling image "<image>"`, and since 1.32
# (kubernetes/kubernetes#127918) followed by `: <ErrImagePull|RegistryUnavailable|SignatureValidationFailed>: <error>`,
# the error of the last real pull attempt.
_BACKOFF = re.compile(r'^Back-off pulling image "([^"]*)"(?:: (.*))?$', re.DOTALL)
_CARRIED_REASON = re.compile(r"^([A-Z][A-Za-z]+): (.*)$", re.DOTALL)
_PULL_PREFIX = re.compile(r'^Failed to pull image "[^"]*": ')
_RPC_PREFIX = re.compile(r"^rpc error: code = \w+ desc = ")
# client-go's event correlator (tools/record/events_cache.go, EventAggregatorByReasonMessageFunc) rewrites the
# message of the 10th similar event (same object and reason) within 10 minutes with this prefix.
COMBINED_PREFIX = "(combined from similar events): "
# Texts in which kubelet names the image it tried (image_manager.go and the runtimes' quoted references).
_QUOTED = re.compile(r'"([^"\s]+)"')
_REGISTRY_UNAVAILABLE = re.compile(r"^image pull failed for (\S+) because ")


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
    ran_before: bool = False  # a container of this name ran in the pod before (status.image is then the runtime's)


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
                last = st.get("lastState") or {}
                restarts = st.get("restartCount")
                ran = (
                    bool(st.get("containerID"))
                    or (isinstance(last, dict) and "terminated" in last)
                    or (isinstance(restarts, int) and restarts > 0)
                )
                yield ContainerView(
                    name,
                    kind,
                    str(c.get("image", "")),
                    "waiting",
                    waiting.get("reason"),
                    str(waiting.get("message") or ""),
                    str(st.get("image") or ""),
                    ran,
                )
            elif "running" in state:
                yield ContainerView(name, kind, str(c.get("image", "")), "running")
            elif "terminated" in state:
                yield ContainerView(name, kind, str(c.get("image", "")), "terminated")
            else:
                yield ContainerView(name, kind, str(c.get("image", "")), None)


def same_image(a: str, b: str) -> bool:
    """Whether two references name the same image once normalised (`nginx` == `docker.io/library/nginx:latest`)."""
    if a == b:
        return True
    ra, rb = imageref.try_parse(a), imageref.try_parse(b)
    return ra is not None and rb is not None and ra == rb


def images_named(message: str) -> list[str]:
    """The image references a waiting message names: the back-off's image, `image pull failed for X`, and quoted
    references (kubelet's `Failed to pull image "X"`, containerd's `failed to pull and unpack image "X"`)."""
    text = strip_combined(message)
    found: list[str] = []
    m = _BACKOFF.match(text)
    if m is not None:
        found.append(m.group(1))
        text = m.group(2) or ""
    m2 = _REGISTRY_UNAVAILABLE.match(_strip_carried(text))
    if m2 is not None:
        found.append(m2.group(1))
    found.extend(q for q in _QUOTED.findall(text) if imageref.try_parse(q) is not None)
    return found


def waits_for_spec_image(c: ContainerView) -> bool:
    """Whether a pull wait concerns the container's current spec image.

    kubelet reports `status.image` from the runtime for a container that ran before (the runtime's normalised name,
    or the previous image after an in-place image change) and the spec image otherwise (kubelet_pods.go,
    convertToAPIContainerStatuses). So a status image that differs from the spec is either a restart re-pull (same
    image, other spelling), an in-place change whose new image fails (the message names the new image), or a stale
    status written before kubelet saw the change (the message names the old image; for a container that never
    ran, kubelet would have written the spec image).
    """
    if not c.status_image or same_image(c.status_image, c.image):
        return True
    named = images_named(c.waiting_message)
    if any(same_image(n, c.image) for n in named):
        return True
    if any(same_image(n, c.status_image) for n in named):
        return False
    return c.ran_before


def pull_waits(pod: Mapping[str, Any]) -> list[ContainerView]:
    """The containers of the pod that wait with one of the image pull reasons, for their current spec image.

    A wait whose status still describes another image than the spec (the image was just changed) is skipped.
    """
    return [
        c
        for c in containers(pod)
        if c.state == "waiting" and c.waiting_reason in PULL_WAITING_REASONS and waits_for_spec_image(c)
    ]


def may_wait_on_pull(pod: Mapping[str, Any]) -> bool:
    """Whether a container status of the pod waits with an image pull reason, read from the status alone.

    The watcher's cheap test for the great majority of pods, which it need not look at further: no view is built
    per container and the spec is not read. A superset of `pull_waits` (which also matches each status to its spec
    container and its current image): False here means `pull_waits` is empty.
    """
    status = pod.get("status") or {}
    for _spec_key, status_key, _kind in CONTAINER_KINDS:
        for st in status.get(status_key) or ():
            waiting = (st.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") in PULL_WAITING_REASONS:
                return True
    return False


def is_terminating(pod: Mapping[str, Any]) -> bool:
    """A pod being deleted (Terminating: `metadata.deletionTimestamp` set), however long its grace period."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def field_path_container(field_path: str | None) -> tuple[str, str] | None:
    """`spec.initContainers{setup}` -> ("init", "setup"); None for pod-level events."""
    if not field_path:
        return None
    m = _FIELD_PATH.match(field_path)
    if m is None:
        return None
    return _FIELD_KIND[m.group(1)], m.group(2)


def strip_combined(message: str) -> str:
    """An event message without client-go's `(combined from similar events): ` prefix."""
    text = message.strip()
    while text.startswith(COMBINED_PREFIX):
        text = text[len(COMBINED_PREFIX) :].lstrip()
    return text


def _strip_carried(text: str) -> str:
    m = _CARRIED_REASON.match(text)
    return m.group(2) if m is not None else text


def carried_error(message: str) -> tuple[str, str] | None:
    """The last pull error a kubelet >= 1.32 back-off message carries, as (kubelet reason, error text).

    `Back-off pulling image "x": ErrImagePull: rpc error: ...` -> ("ErrImagePull", "rpc error: ..."); None for
    the older bare `Back-off pulling image "x"` and for any other text.
    """
    m = _BACKOFF.match(message.strip())
    if m is None or not m.group(2):
        return None
    rest = m.group(2).strip()
    r = _CARRIED_REASON.match(rest)
    if r is not None and " " not in r.group(1):
        return r.group(1), r.group(2).strip()
    return "", rest


def is_generic_backoff(message: str) -> bool:
    """True when an ImagePullBackOff message names only the image (kubelets before 1.32), not the error."""
    text = message.strip()
    return not text or (bool(_BACKOFF.match(text)) and carried_error(text) is None)


def is_pull_error_event(reason: str | None, message: str | None) -> bool:
    """kubelet's `Failed` event that carries the runtime's pull error (not `Error: ErrImagePull`), also when
    client-go's correlator combined it with similar events."""
    return reason == "Failed" and bool(message) and strip_combined(str(message)).startswith("Failed to pull image ")


def error_text(message: str) -> str:
    """The runtime's error inside a message, for comparing a waiting message, a back-off message that carries the
    last error, and a (combined) Failed event's message."""
    text = strip_combined(message)
    carried = carried_error(text)
    if carried is not None:
        text = carried[1]
    text = _PULL_PREFIX.sub("", text)
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
