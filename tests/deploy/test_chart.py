"""The Helm chart: rendered with several value sets, validated against Kubernetes 1.30 schemas, least privilege."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from bot.settings import Settings

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "imagepull-doctor"
KUBE_VERSION = "1.30"
RELEASE, NAMESPACE = "ipd", "imagepull-doctor"
FULLNAME = "ipd-imagepull-doctor"
SECRET = "imagepull-doctor-credentials"

DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
BASE: dict[str, Any] = {"cluster": {"name": "prod-eu-1"}, "existingSecret": {"name": SECRET}}

# Value sets the chart must render to valid, least-privilege manifests.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "http-mode": {"slack": {"mode": "http", "routes": {"prod-eu-1/payments": "#payments-oncall"}}},
    "one-replica": {"replicaCount": 1},
    "secrets-namespaces": {"secrets": {"readNamespaces": ["team-a", "team-b"]}},
    "secrets-cluster-wide": {"secrets": {"readNamespaces": ["team-a"], "readClusterWide": True}},
    "secrets-no-listing": {"secrets": {"readNamespaces": ["team-a"], "listPullSecrets": False}},
    "actions-off": {"actions": {"deletePod": False}},
    "cluster-authority": {
        "access": {"mode": "kubernetes", "impersonation": {"groups": ["sre", "platform"]}},
        "actions": {"deletePod": False},
    },
    "prevention-off": {"prevention": {"enabled": False}},
    "actions-on": {
        "secrets": {"readNamespaces": ["team-a"]},
        "actions": {"deletePod": True, "recreateSecret": True, "linkSecret": True, "namespaces": ["team-a", "team-b"]},
    },
    "everything-optional": {
        "slack": {"mode": "http"},
        "replicaCount": 3,
        "cluster": {"includeNamespaces": ["team-a"], "excludeNamespaces": []},
        "migrations": {"hook": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "httpFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        },
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": ["registry-pull"],
        "access": {"grants": {"S0123TEAM": ["team-a:*"]}, "twoPersonRule": True},
        "extraEnv": [{"name": "IMAGEPULL_INCIDENTS__UPDATE_INTERVAL_S", "value": "60"}],
        "podAnnotations": {"example.com/owner": "sre"},
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}},
    },
}

SECRET_ENV = {
    "IMAGEPULL_DATABASE_URL": "databaseUrlKey",
    "IMAGEPULL_SLACK__BOT_TOKEN": "botTokenKey",
    "IMAGEPULL_SLACK__APP_TOKEN": "appTokenKey",
    "IMAGEPULL_SLACK__SIGNING_SECRET": "signingSecretKey",
    "IMAGEPULL_AUDIT__HMAC_KEY": "auditHmacKeyKey",
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}


Renderer = Callable[[dict[str, Any]], dict[str, str]]


def merge_values(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of value files, for building test values: maps merge key by key, other values replace, a
    null override deletes the key."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a rendered chart (NOTES.txt and empty documents left out)."""
    objects: list[dict[str, Any]] = []
    for key in sorted(rendered):
        if not key.endswith("NOTES.txt"):
            objects.extend(doc for doc in yaml.safe_load_all(rendered[key]) if doc)
    return objects


def render_helm(values: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, str]:
    """Render with Helm's own engine (helm-python-sdk runs Helm's Go library in-process, offline)."""
    with helm_python.Chart.load(CHART) as chart:
        rendered: dict[str, str] = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    return rendered


@pytest.fixture
def render() -> Renderer:
    """Chart tests render with real Helm only."""
    return render_helm


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


def objects_of(render: Renderer, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects rendered with BASE and the overrides."""
    return manifests(render(merge_values(BASE, overrides)))


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of a kind."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The bot's container."""
    containers: list[dict[str, Any]] = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["bot"]
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's environment by name."""
    return {e["name"]: e for e in c["env"]}


def rules_by_namespace(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    """(apiGroup, resource, verb) granted to the bot, by namespace ("*" for cluster-wide), through bound roles."""
    roles = {(o["kind"], o["metadata"].get("namespace", "*"), o["metadata"]["name"]): o for o in objects}
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ns = binding["metadata"].get("namespace", "*")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
        ref = binding["roleRef"]
        role = roles[(ref["kind"], "*" if ref["kind"] == "ClusterRole" else ns, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.setdefault(ns, set()).add((group, resource, verb))
    return granted


def expected_cluster_rules(values: dict[str, Any]) -> set[tuple[str, str, str]]:
    """What the ClusterRole must grant for these values, and nothing more."""
    gets = {("", r) for r in ("pods", "nodes", "serviceaccounts", "replicationcontrollers")}
    gets |= {("apps", r) for r in ("replicasets", "deployments", "statefulsets", "daemonsets")}
    gets |= {("batch", "jobs"), ("batch", "cronjobs")}
    rules = {(g, r, "get") for g, r in gets}
    rules |= {("", r, v) for r in ("pods", "events") for v in ("list", "watch")}  # what the watcher streams
    rules.add(("", "nodes", "list"))  # the inspector: which platforms exist
    if values.get("prevention", {}).get("enabled", True):  # the latent-failure scan lists every workload
        rules |= {("", "serviceaccounts", "list"), ("batch", "cronjobs", "list")}
        rules |= {("apps", r, "list") for r in ("replicasets", "deployments", "statefulsets", "daemonsets")}
    if values["actions"]["deletePod"]:
        rules.add(("", "pods", "delete"))
    if values["access"]["mode"] in ("kubernetes", "both"):  # SubjectAccessReview, then act as the approver
        rules |= {("authorization.k8s.io", "subjectaccessreviews", "create")}
        rules |= {("", "users", "impersonate"), ("", "groups", "impersonate")}
    if values["secrets"]["readClusterWide"]:
        rules.add(("", "secrets", "get"))
        if values["secrets"].get("listPullSecrets", True):
            rules.add(("", "secrets", "list"))
    return rules


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_every_manifest_validates_against_kubernetes_schemas(render: Renderer, case: str) -> None:
    """Every rendered object passes the strict Kubernetes 1.30 OpenAPI schema (ServiceMonitor: its own checks)."""
    kv = _kubernetes_validate()
    objects = objects_of(render, VALUE_SETS[case])
    assert objects
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            assert obj["kind"] == "ServiceMonitor"
            assert obj["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
            continue
        assert kv.validate(obj, KUBE_VERSION, strict=True) == KUBE_VERSION, obj["kind"]


def test_schema_validation_rejects_a_broken_manifest(render: Renderer) -> None:
    """The validator is not a rubber stamp: a string port and an unknown field fail."""
    kv = _kubernetes_validate()
    deployment = only(objects_of(render, {}), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9090"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBE_VERSION, strict=True)
    del deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_rbac_is_least_privilege(render: Renderer, case: str) -> None:
    """No wildcard; cluster-wide reads only; secrets only where configured; each write verb only for its action."""
    values = merge_values(merge_values(DEFAULTS, BASE), VALUE_SETS[case])
    objects = objects_of(render, VALUE_SETS[case])
    for role in (o for o in objects if o["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
    granted = rules_by_namespace(objects)
    assert granted.pop("*") == expected_cluster_rules(values)
    assert granted.pop(NAMESPACE) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("create", "get", "update")
    }, "the release namespace holds only the Lease Role"

    secrets = values["secrets"]
    read_ns = set() if secrets.get("readClusterWide") else set(secrets.get("readNamespaces", []))
    actions = values.get("actions", {})
    write_ns = (
        set(actions.get("namespaces", [])) if actions.get("recreateSecret") or actions.get("linkSecret") else set()
    )
    assert set(granted) == read_ns | write_ns
    for ns, rules in granted.items():
        expected: set[tuple[str, str, str]] = set()
        if ns in read_ns:
            expected.add(("", "secrets", "get"))
            if secrets.get("listPullSecrets", True):
                expected.add(("", "secrets", "list"))
        if ns in write_ns and actions["recreateSecret"]:
            expected |= {("", "secrets", v) for v in ("get", "create", "patch")}
        if ns in write_ns and actions["linkSecret"]:
            expected.add(("", "serviceaccounts", "patch"))
        assert rules == expected, ns

    everything = [rule for rules in rules_by_namespace(objects).values() for rule in rules]
    assert {r for g, r, v in everything if v == "delete"} <= {"pods"}
    assert not [rule for rule in everything if rule[1] == "secrets" and rule[2] == "watch"]
    if not secrets.get("listPullSecrets", True):
        assert not [rule for rule in everything if rule[1] == "secrets" and rule[2] == "list"]
    assert not [rule for rule in everything if rule[2] in {"deletecollection", "escalate", "bind"}]
    if values["access"]["mode"] == "grants":
        assert not [rule for rule in everything if rule[2] == "impersonate"]
    else:  # impersonation, scoped to the listed names where the values list them
        scoped = values["access"]["impersonation"]
        cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
        for rule in (r for r in cluster_role["rules"] if r["verbs"] == ["impersonate"]):
            assert rule["resources"] in (["users"], ["groups"]), rule
            assert rule.get("resourceNames", []) == scoped[rule["resources"][0]], rule


def test_lease_rbac_names_the_lease_the_bot_uses(render: Renderer, monkeypatch: pytest.MonkeyPatch) -> None:
    """get/update are limited to the Lease the bot takes (prefix + "-" + cluster, as bot/composition.py names it)."""
    objects = objects_of(render, {"leaderElection": {"leaseName": "ipd-leader"}})
    lease_role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-lease"))
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["ipd-leader-prod-eu-1"],
            "verbs": ["get", "update"],
        },
    ]
    env = env_of(container(objects))
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    names = list(env)
    assert names.index("POD_NAME") < names.index("IMAGEPULL_HA__IDENTITY"), "$(POD_NAME) expands only if defined first"
    assert env["IMAGEPULL_HA__IDENTITY"]["value"] == "$(POD_NAME)"
    for name in ("IMAGEPULL_HA__LEASE_NAME", "IMAGEPULL_HA__LEASE_NAMESPACE", "IMAGEPULL_KUBE__CLUSTER_NAME"):
        monkeypatch.setenv(name, env[name]["value"])
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    lease = f"{settings.ha.lease_name}-{settings.kube.cluster_name}"
    assert (settings.ha.lease_namespace, lease) == (NAMESPACE, "ipd-leader-prod-eu-1")


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_pods_run_locked_down(render: Renderer, case: str) -> None:
    """Non-root uid 10001, RuntimeDefault seccomp, read-only root, no capabilities, no escalation (bot and Job)."""
    objects = objects_of(render, VALUE_SETS[case])
    pod_specs = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
    assert pod_specs
    for spec in pod_specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_probes_hit_health_endpoints_on_the_metrics_port(render: Renderer) -> None:
    """Liveness is /healthz and readiness /readyz, both on the named metrics port (9090)."""
    c = container(objects_of(render, {}))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in c["ports"]
    assert c["args"] == ["run"]


@pytest.mark.parametrize(
    ("mode", "present", "absent"), [("socket", "APP_TOKEN", "SIGNING_SECRET"), ("http", "SIGNING_SECRET", "APP_TOKEN")]
)
def test_credentials_come_from_the_existing_secret(render: Renderer, mode: str, present: str, absent: str) -> None:
    """Tokens and the database URL are secretKeyRefs to existingSecret; the chart makes no Secret and holds no value."""
    objects = objects_of(render, {"slack": {"mode": mode}})
    env = env_of(container(objects))
    assert f"IMAGEPULL_SLACK__{present}" in env and f"IMAGEPULL_SLACK__{absent}" not in env
    for name, key_value in SECRET_ENV.items():
        if name not in env:
            continue
        assert "value" not in env[name], name
        default_key = DEFAULTS["existingSecret"][key_value]
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": default_key}}
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = yaml.safe_dump_all(objects)
    for marker in ("xoxb-", "xoxp-", "xapp-", "postgresql+asyncpg://", "password"):
        assert marker not in text


def test_rendered_environment_is_accepted_by_the_bot_settings(
    render: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Deployment's environment, with the Secret's keys filled in, builds the bot's Settings as intended."""
    overrides = VALUE_SETS["everything-optional"] | {"secrets": {"readNamespaces": ["team-a"]}}
    env = env_of(container(objects_of(render, overrides)))
    fake_secret = {
        "slack-bot-token": "xoxb-test",
        "slack-signing-secret": "signing-test",
        "database-url": "postgresql+asyncpg://ipd@db:5432/ipd",
        "audit-hmac-key": "audit-key-test",
    }
    for key in list(os.environ):
        if key.startswith("IMAGEPULL_"):
            monkeypatch.delenv(key)
    for name, var in env.items():
        if not name.startswith("IMAGEPULL_"):
            continue
        if "value" in var:
            value = var["value"].replace("$(POD_NAME)", "ipd-imagepull-doctor-5d8f-x2x")  # as the kubelet expands it
        else:
            value = fake_secret[var["valueFrom"]["secretKeyRef"]["key"]]
        monkeypatch.setenv(name, value)
        known = name.removeprefix("IMAGEPULL_").lower().split("__")
        assert known[0] in Settings.model_fields, name
        if len(known) == 2:
            sub = Settings.model_fields[known[0]].annotation
            assert known[1] in sub.model_fields, name  # type: ignore[union-attr]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kube.cluster_name == "prod-eu-1"
    assert settings.kube.include_namespaces == ["team-a"]
    assert settings.kube.exclude_namespaces == []
    assert settings.kube.secret_namespaces == ["team-a"]
    assert settings.slack.mode == "http" and settings.slack.http_port == 3000
    assert settings.slack.bot_token is not None and settings.slack.bot_token.get_secret_value() == "xoxb-test"
    assert settings.access.grants == {"S0123TEAM": ["team-a:*"]} and settings.access.two_person_rule is True
    assert settings.incidents.update_interval_s == 60.0 and settings.incidents.resolve_grace_s == 30.0
    assert settings.metrics_port == 9090 and settings.log_json is True
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.ha.enabled is True and settings.ha.identity == "ipd-imagepull-doctor-5d8f-x2x"
    assert settings.ha.lease_namespace == NAMESPACE


def test_default_values_build_default_settings(render: Renderer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With default values the bot gets socket mode, kube-system excluded and no secret namespaces."""
    env = env_of(container(objects_of(render, {})))
    for name, var in env.items():
        if name.startswith("IMAGEPULL_") and "value" in var:
            monkeypatch.setenv(name, var["value"])
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.slack.mode == "socket"
    assert settings.kube.exclude_namespaces == ["kube-system"]
    assert settings.kube.secret_namespaces == []
    assert settings.slack.routes == {}


@pytest.mark.parametrize(
    ("replicas", "enabled", "expected"), [(2, True, True), (3, True, True), (1, True, False), (2, False, False)]
)
def test_pdb_only_when_it_cannot_block_drains(render: Renderer, replicas: int, enabled: bool, expected: bool) -> None:
    """minAvailable 1 when more than one replica; none for one replica (it would block every drain)."""
    objects = objects_of(render, {"replicaCount": replicas, "podDisruptionBudget": {"enabled": enabled}})
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert only(objects, "Deployment")["spec"]["replicas"] == replicas
    if not expected:
        assert pdbs == []
        return
    assert len(pdbs) == 1
    assert pdbs[0]["spec"]["minAvailable"] == 1
    assert pdbs[0]["spec"]["selector"]["matchLabels"] == only(objects, "Deployment")["spec"]["selector"]["matchLabels"]


def test_selectors_match_the_pods(render: Renderer) -> None:
    """Deployment, Service, spread constraints and anti-affinity all select the bot's own pod labels."""
    objects = objects_of(render, {})
    deployment = only(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert only(objects, "Service")["spec"]["selector"] == selector
    spec = deployment["spec"]["template"]["spec"]
    assert {t["topologyKey"] for t in spec["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert all(t["labelSelector"]["matchLabels"] == selector for t in spec["topologySpreadConstraints"])
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == selector
    assert spec["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"] == FULLNAME
    assert deployment["spec"]["replicas"] == 2


def test_http_mode_exposes_the_slack_port(render: Renderer) -> None:
    """In http mode the container and the Service expose port 3000 next to metrics; socket mode exposes metrics only."""
    http = objects_of(render, {"slack": {"mode": "http"}})
    assert [p["name"] for p in only(http, "Service")["spec"]["ports"]] == ["metrics", "http"]
    assert {"name": "http", "containerPort": 3000, "protocol": "TCP"} in container(http)["ports"]
    socket = objects_of(render, {})
    assert [p["name"] for p in only(socket, "Service")["spec"]["ports"]] == ["metrics"]


def test_migration_hook_job(render: Renderer) -> None:
    """The optional hook runs `db upgrade` before install/upgrade with only the database URL and no API token."""
    assert not [o for o in objects_of(render, {}) if o["kind"] == "Job"]
    job = only(objects_of(render, {"migrations": {"hook": {"enabled": True}}}), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    assert c["args"] == ["db", "upgrade"]
    env = env_of(c)
    assert env["IMAGEPULL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "database-url"}
    assert not [name for name in env if name.startswith("IMAGEPULL_SLACK__")]
    owner = {"migrations": {"hook": {"enabled": True, "databaseUrlKey": "database-owner-url"}}}
    job = only(objects_of(render, owner), "Job")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["IMAGEPULL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-owner-url"


def test_optional_objects(render: Renderer) -> None:
    """ServiceMonitor and NetworkPolicy appear only when enabled; the policy allows the metrics and Slack ports."""
    kinds = {o["kind"] for o in objects_of(render, {})}
    assert "ServiceMonitor" not in kinds and "NetworkPolicy" not in kinds
    objects = objects_of(render, VALUE_SETS["everything-optional"])
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    policy = only(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == ["metrics", "http"]
    assert container(objects)["image"] == "imagepull-doctor@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cluster": {"name": ""}}, "cluster.name is required"),
        ({"existingSecret": {"name": ""}}, "existingSecret.name is required"),
        ({"actions": {"recreateSecret": True}}, "need actions.namespaces"),
        ({"actions": {"linkSecret": True}}, "need actions.namespaces"),
        ({"slack": {"mode": "websocket"}}, "slack.mode must be socket or http"),
    ],
)
def test_invalid_values_fail_to_render(render: Renderer, overrides: dict[str, Any], message: str) -> None:
    """Values that cannot work stop the install with a message that says what to set."""
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(merge_values(BASE, overrides))


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_helm_lint_is_clean(case: str) -> None:
    """`helm lint --strict` against Kubernetes 1.30 reports no warning or error (only the icon suggestion)."""
    report = helm_python.lint(CHART, merge_values(BASE, VALUE_SETS[case]), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def _values_lines() -> Iterator[tuple[int, str, str, int]]:
    """(line number, key, dotted path, indent) of every key line in values.yaml."""
    stack: list[tuple[int, str]] = []
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        yield number, m.group(2), ".".join(k for _, k in stack), indent


def test_values_are_documented_and_used() -> None:
    """Every values.yaml key has a comment above it or sits in a commented block, and a template reads it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    templates = "\n".join(p.read_text() for p in (CHART / "templates").iterdir())
    documented: dict[str, bool] = {}
    for number, _key, path, _indent in _values_lines():
        previous = lines[number - 2].strip() if number >= 2 else ""
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        documented[path] = previous.startswith("#") or documented.get(parent, False)
        assert documented[path] or not _is_leaf(path), f"values.yaml:{number} {path} has no comment"
        prefixes = [".".join(path.split(".")[:i]) for i in range(1, path.count(".") + 2)]
        assert any(re.search(rf"\.Values\.{re.escape(p)}\b", templates) for p in prefixes), f"{path} is never used"


def _is_leaf(path: str) -> bool:
    node: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in path.split("."):
        node = node[key]
    return not isinstance(node, dict) or not node
