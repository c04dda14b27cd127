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
from bot.model import Cause, Facts, FixCommand, PodInspection, ProbeResult, PullFailure

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


def _slug(host: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in host.lower()).strip("-")
    return "-".join(p for p in out.split("-") if p)[:40] or "registry"


def _create_secret(ns: str, name: str, server: str, registry: str) -> FixCommand:
    # kubectl counts only the arguments before `--` as the NAME of `create secret` ("exactly one NAME is required,
    # got 0", NameFromCommandArgs with ArgsLenAtDash), so the name cannot follow `--`: it is checked as the API checks
    # object names (DNS-1123, never starting with "-") instead, and an invalid one is replaced.
    name = name if valid_name(name) else DEFAULT_SECRET_NAME
    return FixCommand(
        f"Create the pull secret {name} for {registry} (fill in REGISTRY_USER and REGISTRY_PASSWORD)",
        _kubectl(
            ns,
            "create",
            "secret",
            "docker-registry",
            q(name),
            q(f"--docker-server={server}"),
            '--docker-username="$REGISTRY_USER"',
            '--docker-password="$REGISTRY_PASSWORD"',
        ),
        mutating=True,
    )


def _add_to_template(failure: PullFailure, inspection: PodInspection | None, secret: str) -> FixCommand | None:
    """A strategic merge patch of the workload's pod template: imagePullSecrets merge by name, nothing is dropped."""
    kind = failure.workload.kind.lower()
    path = _POD_SPEC_PATH.get(kind)
    if path is None:
        return None
    own = inspection.pod_secret_names if inspection else ()
    if inspection is not None and not own:
        own = tuple(c.name for c in inspection.secrets if c.referenced_by == "pod")
    names = [*own, secret]
    body: dict[str, object] = {"imagePullSecrets": [{"name": n} for n in dict.fromkeys(names)]}
    for key in reversed(path):
        body = {key: body}
    target = q(f"{kind}/{failure.workload.name}")
    return FixCommand(
        f"Add the pull secret {secret} to {kind}/{failure.workload.name} (new pods are rolled out with it)",
        _kubectl(failure.namespace, "patch", target, "-p", q(json.dumps(body, separators=(",", ":")))),
        mutating=True,
    )


def _free_name(inspection: PodInspection | None, wanted: str) -> str:
    taken = {c.name for c in (inspection.secrets if inspection else ()) if c.exists}
    if wanted not in taken:
        return wanted
    for i in range(2, 50):
        if f"{wanted}-{i}" not in taken:
            return f"{wanted}-{i}"
    return f"{wanted}-new"


def _secret_commands(
    cause: Cause, failure: PullFailure, inspection: PodInspection | None, facts: Facts
) -> list[FixCommand]:
    """Create or link a pull secret; a secret that exists is never overwritten (others may need its entries)."""
    ns = failure.namespace
    registry = _registry(failure, facts) or facts.host or "REGISTRY_HOST"
    server = DOCKER_HUB_SERVER if registry == imageref.DOCKER_HUB else registry
    sa = _service_account(inspection)
    out = [
        FixCommand(
            "Show the pull secrets of the pod and of its ServiceAccount",
            _kubectl(ns, "get", "pod", q(failure.pod), "-o", q("jsonpath={.spec.imagePullSecrets}"))
            + " && "
            + _kubectl(ns, "get", "serviceaccount", q(sa), "-o", q("jsonpath={.imagePullSecrets}")),
        )
    ]
    checks = inspection.secrets if inspection else ()
    sent = [c for c in checks if c.referenced_by == "pod"]
    on_sa = [c for c in checks if c.referenced_by == "serviceaccount" and c.exists and c.parses and c.matches_image]
    linkable = [c for c in checks if c.referenced_by == "namespace" and c.exists and c.parses and c.matches_image]
    # A name the API would refuse for an object (`--kubeconfig=evil.conf`: pod specs' imagePullSecrets are not
    # validated) is never put into a command; a secret of a valid new name is proposed instead.
    missing = [c for c in sent if not c.exists and valid_name(c.name)]
    if cause is Cause.RATE_LIMITED and any(c.exists and c.matches_image for c in sent):
        return out  # the pod already pulls with credentials: another secret does not raise the limit
    if cause is Cause.PULL_SECRET_MISSING and missing:
        # The name the pod already refers to: creating it is all the kubelet needs (it reads secrets at each pull).
        out.append(_create_secret(ns, missing[0].name, server, registry))
        return out
    if not sent and on_sa:
        out.append(_recreate(failure, inspection, f"ServiceAccount {sa} already lists {on_sa[0].name}"))
        return out
    if not sent:
        if linkable:
            secret = linkable[0].name
        else:
            secret = _free_name(inspection, DEFAULT_SECRET_NAME)
            out.append(_create_secret(ns, secret, server, registry))
        if cause in _LINK_CAUSES or cause in SECRET_CAUSES:
            out.append(
                FixCommand(
                    f"Give the ServiceAccount {sa} the pull secret {secret} (added to the secrets it already has)",
                    _link_secret_command(ns, sa, secret),
                    mutating=True,
                )
            )
            out.append(_recreate(failure, inspection, "ServiceAccount pull secrets are copied into pods at creation"))
        return out
    # The pod sends secrets of its own: ServiceAccount secrets never reach its pods. A new secret, added to the
    # workload's template next to the ones it has; the existing secrets stay as they are.
    secret = _free_name(inspection, f"{DEFAULT_SECRET_NAME}-{_slug(registry)}")
    out.append(_create_secret(ns, secret, server, registry))
    patch = _add_to_template(failure, inspection, secret)
    if patch is not None:
        out.append(patch)
    else:
        out.append(
            FixCommand(
                f"Pod {failure.pod} has no controller and a pod's imagePullSecrets cannot change: recreate it from"
                f" its manifest with {secret} added to spec.imagePullSecrets",
                _kubectl(ns, "get", "pod", q(failure.pod), "-o", "yaml"),
            )
        )
    return out


def _recreate(failure: PullFailure, inspection: PodInspection | None, why: str) -> FixCommand:
    owner = inspection.owner_chain[-1] if inspection and inspection.owner_chain else failure.workload
    if inspection is not None and inspection.controlled:
        title = f"Recreate the failing pod ({why}): delete it, its {owner.kind.lower()} creates a new one"
    else:
        title = f"Recreate the pod from its manifest ({why}): it has no controller"
    return FixCommand(title, _kubectl(failure.namespace, "delete", "pod", q(failure.pod)), mutating=True)


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
    registry = _registry(failure, facts)
    host = facts.host or registry
    if host and registry and ":" not in host and registry.split(":", 1)[0] == host:
        host = registry  # keep the registry's port in the command
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


def _set_image_to(failure: PullFailure, title: str, image: str) -> FixCommand | None:
    kind = failure.workload.kind.lower()
    if kind not in _SET_IMAGE_KINDS:
        return None
    target = q(f"{kind}/{failure.workload.name}")
    return FixCommand(
        title, _kubectl(failure.namespace, "set", "image", target, q(f"{failure.container}={image}")), mutating=True
    )


def _repository_commands(
    cause: Cause, failure: PullFailure, facts: Facts, probe: ProbeResult | None
) -> list[FixCommand]:
    ref = _image(failure, facts)
    out: list[FixCommand] = []
    near = probe.nearest_repositories if probe else ()
    if ref is not None and near:
        suffix = f"@{ref.digest}" if ref.digest else f":{ref.tag or imageref.DEFAULT_TAG}"
        shown = near[0].removeprefix("library/") if ref.registry == imageref.DOCKER_HUB else near[0]
        name = shown if ref.registry == imageref.DOCKER_HUB else f"{ref.registry}/{near[0]}"
        cmd = _set_image_to(failure, f"Use the existing repository {near[0]}", name + suffix)
        out += [cmd] if cmd else []
    elif ref is not None:
        if ref.registry == imageref.DOCKER_HUB:
            url = f"https://hub.docker.com/search?q={ref.repository.rsplit('/', 1)[-1]}"
            out.append(FixCommand("Find the repository's exact name on Docker Hub", f"echo {q(url)}"))
        else:
            out.append(
                FixCommand(
                    f"Find the repository's exact name: list what {ref.registry} holds (where its catalog is open)",
                    " ".join(("curl", "-s", q(f"https://{ref.registry}/v2/_catalog?n=1000"))),
                )
            )
    return out


def _platform_commands(
    failure: PullFailure, inspection: PodInspection | None, probe: ProbeResult | None, node: str | None
) -> list[FixCommand]:
    out: list[FixCommand] = []
    if node:
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
    offered = [p.split("/")[:2] for p in (probe.platforms if probe else ())]
    nodes = [p.split("/")[:2] for p in (inspection.cluster_platforms if inspection else ())]
    usable = [p for p in offered if p in nodes]
    kind = failure.workload.kind.lower()
    path = _POD_SPEC_PATH.get(kind)
    if usable and path is not None:
        os_name, arch = usable[0]
        body: dict[str, object] = {"nodeSelector": {"kubernetes.io/os": os_name, "kubernetes.io/arch": arch}}
        for key in reversed(path):
            body = {key: body}
        out.append(
            FixCommand(
                f"Run {kind}/{failure.workload.name} on {os_name}/{arch} nodes, a platform the image offers",
                _kubectl(
                    failure.namespace,
                    "patch",
                    q(f"{kind}/{failure.workload.name}"),
                    "-p",
                    q(json.dumps(body, separators=(",", ":"))),
                ),
                mutating=True,
            )
        )
    else:
        ref = imageref.try_parse(failure.image)
        wanted = ",".join(dict.fromkeys("/".join(p) for p in nodes)) or "linux/amd64,linux/arm64"
        out.append(
            FixCommand(
                f"No node runs a platform the image offers: build and push it for {wanted}",
                " ".join(
                    (
                        "docker",
                        "buildx",
                        "build",
                        q(f"--platform={wanted}"),
                        "-t",
                        q(str(ref or failure.image)),
                        "--push",
                        ".",
                    )
                ),
            )
        )
    return out


def _cause_commands(
    cause: Cause,
    failure: PullFailure,
    inspection: PodInspection | None,
    facts: Facts,
    probe: ProbeResult | None,
    *,
    pullable_now: bool,
    credentials_work: bool,
) -> list[FixCommand]:
    out: list[FixCommand] = []
    node = _node(failure, inspection)
    ns, pod = failure.namespace, failure.pod
    if cause is Cause.TAG_NOT_FOUND and pullable_now:
        pass  # the tag is there now: the retry below is the fix, not another tag
    elif cause is Cause.TAG_NOT_FOUND:
        near = probe.nearest_tags if probe else ()
        cmd = None
        if near:
            ref = _image(failure, facts)
            if ref is not None:
                cmd = _set_image_to(
                    failure, f"Point the workload at the existing tag {near[0]}", f"{ref.name}:{near[0]}"
                )
        if cmd is None:
            cmd = _set_image(failure, facts, "Point the workload at a tag that exists (fill in NEW_TAG)", ':"$NEW_TAG"')
        out += [cmd] if cmd else []
    elif cause is Cause.REPO_NOT_FOUND or cause is Cause.REPO_NOT_FOUND_OR_NO_ACCESS:
        out += _repository_commands(cause, failure, facts, probe)
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
    elif cause is Cause.PLATFORM_MISMATCH:
        out += _platform_commands(failure, inspection, probe, node)
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
    if credentials_work:
        out.append(
            FixCommand(
                "The pull secret works: ask the registry's owner for pull access to the repository, or fix its name",
                _kubectl(ns, "get", "pod", q(pod), "-o", q("jsonpath={.spec.containers[*].image}")),
            )
        )
    elif cause in _SECRET_CAUSES:
        out += _secret_commands(cause, failure, inspection, facts)
    if cause in _NODE_PROBE_CAUSES:
        out += _node_probe(cause, node, facts, failure)
    if any(c.command.endswith(f"delete pod {q(pod)}") for c in out):
        return out
    if pullable_now and inspection is not None and inspection.controlled and cause in NO_RETRY_CAUSES:
        out.append(_recreate(failure, inspection, "the registry serves the image now"))
    elif cause not in NO_RETRY_CAUSES and inspection is not None and inspection.controlled:
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
    cause: Cause,
    failure: PullFailure,
    inspection: PodInspection | None,
    facts: Facts,
    *,
    probe: ProbeResult | None = None,
    pullable_now: bool = False,
    credentials_work: bool = False,
) -> tuple[FixCommand, ...]:
    """Commands filled with the real names, shell-quoted: read-only look-ups first, then the fixes."""
    commands = _cause_commands(
        cause,
        failure,
        inspection,
        facts,
        probe,
        pullable_now=pullable_now,
        credentials_work=credentials_work,
    )
    return (*_look(failure), *commands)
