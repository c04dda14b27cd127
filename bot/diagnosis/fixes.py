"""Copy-paste fix commands per cause, filled with the real names and shell-quoted. Pure.

Names (namespace, pod, container, image, secret, ServiceAccount, workload, node) are data, never code:
each goes through `shlex.quote` as one whole argument. Placeholders the user fills in (`"$REGISTRY_USER"`,
`"$NEW_TAG"`) are our own constant text, left unquoted-for-expansion on purpose; no secret value is ever
written into a command.
"""

from __future__ import annotations

import json
import re
import shlex

from bot import imageref
from bot.diagnosis.catalogue import NO_RETRY_CAUSES, SECRET_CAUSES
from bot.model import Cause, Facts, FixCommand, PodInspection, PullFailure

DEFAULT_SECRET_NAME = "regcred"  # noqa: S105 - a secret object name, not a password
DEBUG_IMAGE = "curlimages/curl:8.8.0"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
# Kinds whose pod template `kubectl set image` can change (a Job's template is immutable).
_SET_IMAGE_KINDS = frozenset(
    {"deployment", "statefulset", "daemonset", "replicaset", "replicationcontroller", "cronjob"}
)
# Where each kind keeps its pod spec, for strategic merge patches.
_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "deployment": ("spec", "template", "spec"),
    "statefulset": ("spec", "template", "spec"),
    "daemonset": ("spec", "template", "spec"),
    "replicaset": ("spec", "template", "spec"),
    "replicationcontroller": ("spec", "template", "spec"),
    "cronjob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Authenticating also lifts a registry's anonymous rate limit.
_SECRET_CAUSES = SECRET_CAUSES | {Cause.RATE_LIMITED}
_LINK_CAUSES = frozenset(
    {Cause.PULL_SECRET_NOT_LINKED, Cause.REPO_NOT_FOUND_OR_NO_ACCESS, Cause.AUTH_FAILED, Cause.RATE_LIMITED}
)
_NODE_PROBE_CAUSES = frozenset({Cause.DNS_FAILURE, Cause.NETWORK_TIMEOUT, Cause.TLS_CERT})
_DISK_CAUSES = frozenset({Cause.DISK_FULL, Cause.NODE_DISK_PRESSURE})

q = shlex.quote
# What the API server accepts as an object name (DNS-1123 subdomain). A name read from a pod spec is not checked by
# the API (`imagePullSecrets: [{name: "--kubeconfig=evil.conf"}]` is accepted), so it is checked here before it is
# put into a command: quoting keeps it one argument, but an argument starting with "-" would still be a flag.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)


def valid_name(name: str) -> bool:
    """Whether `name` is a valid Kubernetes object name (DNS-1123 subdomain, at most 253 characters)."""
    return len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def _kubectl(ns: str, *args: str) -> str:
    return " ".join(("kubectl", "-n", q(ns), *args))


def _image(failure: PullFailure, facts: Facts) -> imageref.ImageRef | None:
    ref = imageref.try_parse(failure.image)
    if ref is None and facts.registry and facts.repository:
        ref = imageref.ImageRef(facts.registry, facts.repository)
    return ref


def _registry(failure: PullFailure, facts: Facts) -> str | None:
    ref = imageref.try_parse(failure.image)
    return ref.registry if ref is not None else facts.registry


def _secret_name(cause: Cause, inspection: PodInspection | None) -> str:
    secrets = tuple(s for s in (inspection.secrets if inspection else ()) if valid_name(s.name))
    for check in secrets:
        if cause is Cause.PULL_SECRET_MISSING and not check.exists:
            return check.name
    for check in secrets:
        if check.matches_image:
            return check.name
    for check in secrets:
        if check.referenced_by == "pod":
            return check.name
    return secrets[0].name if secrets else DEFAULT_SECRET_NAME


def _service_account(inspection: PodInspection | None) -> str:
    name = (inspection.service_account if inspection else None) or "default"
    return name if valid_name(name) else "default"


def _node(failure: PullFailure, inspection: PodInspection | None) -> str | None:
    if inspection and inspection.node:
        return inspection.node.name
    return failure.node


def _look(failure: PullFailure) -> list[FixCommand]:
    ns, pod = failure.namespace, failure.pod
    return [
        FixCommand("Look at the pod and its events", _kubectl(ns, "describe", "pod", q(pod))),
        FixCommand(
            "List the pod's events",
            _kubectl(ns, "get", "events", "--field-selector", q(f"involvedObject.name={pod}")),
        ),
    ]


def _set_image(failure: PullFailure, facts: Facts, title: str, value_suffix: str) -> FixCommand | None:
    kind = failure.workload.kind.lower()
    if kind not in _SET_IMAGE_KINDS:
        return None
    ref = _image(failure, facts)
    base = ref.name if ref is not None else ""
    target = q(f"{kind}/{failure.workload.name}")
    assignment = q(f"{failure.container}={base}") + value_suffix
    return FixCommand(title, _kubectl(failure.namespace, "set", "image", target, assignment), mutating=True)


def _secret_commands(
    cause: Cause, failure: PullFailure, inspection: PodInspection | None, facts: Facts
) -> list[FixCommand]:
    ns = failure.namespace
    secret = _secret_name(cause, inspection)
    registry = _registry(failure, facts) or facts.host or "REGISTRY_HOST"
    server = DOCKER_HUB_SERVER if registry == imageref.DOCKER_HUB else registry
    out = [
        FixCommand(
            "Show the pull secrets of the pod and of its ServiceAccount",
            _kubectl(ns, "get", "pod", q(failure.pod), "-o", q("jsonpath={.spec.imagePullSecrets}"))
            + " && "
            + _kubectl(
                ns, "get", "serviceaccount", q(_service_account(inspection)), "-o", q("jsonpath={.imagePullSecrets}")
            ),
        ),
        FixCommand(
            f"Create or replace the pull secret {secret} for {registry} (fill in REGISTRY_USER and REGISTRY_PASSWORD)",
            _kubectl(
                ns,
                "create",
                "secret",
                "docker-registry",
                q(f"--docker-server={server}"),
                '--docker-username="$REGISTRY_USER"',
                '--docker-password="$REGISTRY_PASSWORD"',
                "--dry-run=client",
                "-o",
                "yaml",
                "--",  # the end of the flags: the name is a positional argument whatever it looks like
                q(secret),
            )
            + " | "
            + _kubectl(ns, "apply", "-f", "-"),
            mutating=True,
        ),
    ]
    if cause in _LINK_CAUSES:
        sa = _service_account(inspection)
        out.append(
            FixCommand(
                f"Give the ServiceAccount {sa} the pull secret {secret} (added to the secrets it already has)",
                _link_secret_command(ns, sa, secret),
                mutating=True,
            )
        )
    return out


def _link_secret_command(namespace: str, service_account: str, secret: str) -> str:
    # ServiceAccount.imagePullSecrets has no patch merge key, so a strategic merge patch would REPLACE the list
    # and unlink the secrets already there. A JSON patch `add` to `/imagePullSecrets/-` appends, but fails when
    # the field is absent; there `add` to `/imagePullSecrets` creates it. The line reads the field first and
    # runs the patch that fits (an `||` fallback could replace the list after a failed append).
    sa = q(service_account)
    entry = {"name": secret}
    append = json.dumps([{"op": "add", "path": "/imagePullSecrets/-", "value": entry}], separators=(",", ":"))
    create = json.dumps([{"op": "add", "path": "/imagePullSecrets", "value": [entry]}], separators=(",", ":"))
    read = _kubectl(namespace, "get", "serviceaccount", sa, "-o", q("jsonpath={.imagePullSecrets}"))
    patch = _kubectl(namespace, "patch", "serviceaccount", sa, "--type=json", "-p")
    return f"if {read} | grep -q .; then {patch} {q(append)}; else {patch} {q(create)}; fi"


def _node_probe(cause: Cause, node: str | None, facts: Facts, failure: PullFailure) -> list[FixCommand]:
    host = facts.host or _registry(failure, facts)
    if not node or not host:
        return []
    if cause is Cause.DNS_FAILURE:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        title, cmd = f"Resolve {name} from the node", ["nslookup", q(name)]
        image = "busybox:1.36"
    else:
        title = f"Reach {host} from the node"
        api_host = "registry-1.docker.io" if imageref.registry_key(host) == imageref.DOCKER_HUB else host
        url = f"https://{api_host}/v2/"
        cmd = ["curl", "-sv", "-m", "10", "-o", "/dev/null", q(url)]
        image = DEBUG_IMAGE
    return [
        FixCommand(
            title,
            " ".join(("kubectl", "debug", q(f"node/{node}"), "-it", f"--image={image}", "--", *cmd)),
            mutating=True,
        )
    ]


def _never_pull_patch(failure: PullFailure) -> FixCommand | None:
    kind = failure.workload.kind.lower()
    path = _POD_SPEC_PATH.get(kind)
    if path is None:
        return None
    field = "initContainers" if failure.container_kind == "init" else "containers"
    body: dict[str, object] = {field: [{"name": failure.container, "imagePullPolicy": "IfNotPresent"}]}
    for key in reversed(path):
        body = {key: body}
    patch = json.dumps(body, separators=(",", ":"))
    target = q(f"{kind}/{failure.workload.name}")
    return FixCommand(
        "Let the kubelet pull the image: set imagePullPolicy to IfNotPresent",
        _kubectl(failure.namespace, "patch", target, "-p", q(patch)),
        mutating=True,
    )


def _cause_commands(
    cause: Cause, failure: PullFailure, inspection: PodInspection | None, facts: Facts
) -> list[FixCommand]:
    out: list[FixCommand] = []
    node = _node(failure, inspection)
    ns, pod = failure.namespace, failure.pod
    if cause in {Cause.TAG_NOT_FOUND, Cause.REPO_NOT_FOUND}:
        cmd = _set_image(failure, facts, "Point the workload at a tag that exists (fill in NEW_TAG)", ':"$NEW_TAG"')
        out += [cmd] if cmd else []
    elif cause is Cause.INVALID_IMAGE_NAME:
        out.append(
            FixCommand(
                "Show the image names of the pod",
                _kubectl(
                    ns,
                    "get",
                    "pod",
                    q(pod),
                    "-o",
                    q("jsonpath={range .spec.containers[*]}{.name}={.image}{'\\n'}{end}"),
                ),
            )
        )
        kind = failure.workload.kind.lower()
        if kind in _SET_IMAGE_KINDS:
            target = q(f"{kind}/{failure.workload.name}")
            assignment = q(f"{failure.container}=") + '"$FIXED_IMAGE"'
            out.append(
                FixCommand(
                    "Set a valid image name (fill in FIXED_IMAGE, e.g. registry/repository:tag, lowercase)",
                    _kubectl(ns, "set", "image", target, assignment),
                    mutating=True,
                )
            )
    elif cause is Cause.NEVER_PULL:
        patch = _never_pull_patch(failure)
        out += [patch] if patch else []
    elif cause is Cause.PLATFORM_MISMATCH and node:
        out.append(
            FixCommand(
                "Show the node's OS and CPU architecture",
                " ".join(
                    (
                        "kubectl",
                        "get",
                        "node",
                        q(node),
                        "-o",
                        q("jsonpath={.status.nodeInfo.operatingSystem}/{.status.nodeInfo.architecture}"),
                    )
                ),
            )
        )
    elif cause in _DISK_CAUSES and node:
        out.append(
            FixCommand(
                "Check the node's DiskPressure condition and image usage",
                " ".join(("kubectl", "describe", "node", q(node))),
            )
        )
    elif cause is Cause.SIGNATURE_OR_POLICY:
        out.append(
            FixCommand(
                "List admission webhooks that may judge images",
                "kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations",
            )
        )
    if cause in _SECRET_CAUSES:
        out += _secret_commands(cause, failure, inspection, facts)
    if cause in _NODE_PROBE_CAUSES:
        out += _node_probe(cause, node, facts, failure)
    if cause not in NO_RETRY_CAUSES and inspection is not None and inspection.controlled:
        owner = inspection.owner_chain[-1] if inspection.owner_chain else failure.workload
        out.append(
            FixCommand(
                f"Retry now: delete the pod, its {owner.kind.lower()} creates a new one",
                _kubectl(ns, "delete", "pod", q(pod)),
                mutating=True,
            )
        )
    return out


def fix_commands(
    cause: Cause, failure: PullFailure, inspection: PodInspection | None, facts: Facts
) -> tuple[FixCommand, ...]:
    """Commands filled with the real names, shell-quoted: read-only look-ups first, then the fixes."""
    return (*_look(failure), *_cause_commands(cause, failure, inspection, facts))
