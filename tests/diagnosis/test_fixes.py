"""Fix commands: real names filled in, shell-safe with hostile names, mutating ones marked, every cause covered."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.diagnosis.fixes import fix_commands
from bot.model import Cause, Facts, NodeInfo, PodInspection, PullFailure, SecretCheck, WorkloadRef

HOSTILE = ["; rm -rf /", "$(x)", "`id`", "a\nb", "it's", "--all", "&& echo pwned", "*"]


def failure(
    ns: str = "shop",
    pod: str = "web-7d9f-abc",
    container: str = "web",
    image: str = "ghcr.io/o/web:1.2",
    kind: str = "Deployment",
    workload: str = "web",
    container_kind: str = "container",
) -> PullFailure:
    return PullFailure(
        cluster="prod",
        namespace=ns,
        pod=pod,
        pod_uid="u1",
        container=container,
        container_kind=container_kind,
        image=image,
        waiting_reason="ErrImagePull",
        message="m",
        workload=WorkloadRef(kind, workload),
        node="node-1",
    )


def inspection(
    controlled: bool = True,
    sa: str = "builder",
    secret: str = "ghcr-cred",  # noqa: S107 - a secret object name
    exists: bool = True,
) -> PodInspection:
    return PodInspection(
        namespace="shop",
        pod="web-7d9f-abc",
        service_account=sa,
        controlled=controlled,
        owner_chain=(WorkloadRef("ReplicaSet", "web-7d9f"), WorkloadRef("Deployment", "web")),
        secrets=(SecretCheck(name=secret, referenced_by="pod", exists=exists, matches_image=exists),),
        node=NodeInfo(name="node-1", architecture="arm64", os="linux"),
    )


FACTS = Facts(registry="ghcr.io", repository="o/web", reference="1.2", host="ghcr.io")


def commands(cause: Cause, f: PullFailure | None = None, i: PodInspection | None = None) -> dict[str, str]:
    return {c.title: c.command for c in fix_commands(cause, f or failure(), i, FACTS)}


@pytest.mark.parametrize("cause", list(Cause))
def test_every_cause_gets_commands_that_parse_as_shell(cause: Cause) -> None:
    """Every cause yields commands, each a well-formed shell line starting with kubectl."""
    fixes = fix_commands(cause, failure(), inspection(), FACTS)
    assert fixes
    for fix in fixes:
        assert fix.title
        argv = shlex.split(fix.command)
        if fix.mutating and argv[:2] != ["docker", "buildx"]:
            assert argv[0] == "kubectl" or argv[:2] == ["if", "kubectl"]
        else:
            assert argv[0] in ("kubectl", "curl", "docker", "echo") or argv[:2] == ["if", "kubectl"]


def test_look_commands_come_first_and_are_read_only() -> None:
    """Describe and events use the real namespace and pod and mutate nothing."""
    fixes = fix_commands(Cause.OTHER, failure(), None, FACTS)
    assert fixes[0].command == "kubectl -n shop describe pod web-7d9f-abc"
    assert fixes[1].command == "kubectl -n shop get events --field-selector involvedObject.name=web-7d9f-abc"
    assert not any(f.mutating for f in fixes)


def test_auth_failure_never_overwrites_the_pods_secret() -> None:
    """The pod's own secret may hold entries others need: a new secret, added to the workload's template next to it;
    the credentials stay shell variables. ServiceAccount secrets would never reach pods that list their own."""
    fixes = fix_commands(Cause.AUTH_FAILED, failure(), inspection(), FACTS)
    create = next(f for f in fixes if "create secret docker-registry" in f.command)
    assert create.mutating
    assert create.command.startswith(
        "kubectl -n shop create secret docker-registry regcred-ghcr-io --docker-server=ghcr.io"
    )  # a name checked as the API checks names (kubectl takes no NAME after `--`, so it cannot go there)
    assert '--docker-username="$REGISTRY_USER"' in create.command
    assert '--docker-password="$REGISTRY_PASSWORD"' in create.command
    assert " apply " not in create.command
    patch = next(f for f in fixes if "patch deployment/web" in f.command)
    assert '{"name":"ghcr-cred"},{"name":"regcred-ghcr-io"}' in patch.command
    assert not any("patch serviceaccount" in f.command for f in fixes)


def test_docker_hub_secret_uses_the_index_server() -> None:
    """Docker Hub credentials go to kubectl's default Docker Hub server key."""
    text = commands(Cause.RATE_LIMITED, failure(image="nginx:1"), None)
    assert any("--docker-server=https://index.docker.io/v1/" in c for c in text.values())


def test_missing_secret_is_recreated_under_its_own_name() -> None:
    """pull_secret_missing recreates the secret the pod refers to."""
    fixes = fix_commands(Cause.PULL_SECRET_MISSING, failure(), inspection(secret="regcred-old", exists=False), FACTS)
    assert any(" docker-registry regcred-old " in f.command for f in fixes)


def test_tag_not_found_sets_the_image_on_the_workload() -> None:
    """The workload kind is lowercase and the new tag is left for the user."""
    fixes = fix_commands(Cause.TAG_NOT_FOUND, failure(), inspection(), FACTS)
    cmd = next(f for f in fixes if "set image" in f.command)
    assert cmd.command == 'kubectl -n shop set image deployment/web web=ghcr.io/o/web:"$NEW_TAG"'
    assert cmd.mutating


def test_pod_delete_only_when_a_controller_owns_the_pod() -> None:
    """A retry by deletion is offered for a controlled pod and never for a bare one."""
    with_owner = fix_commands(Cause.NETWORK_TIMEOUT, failure(), inspection(controlled=True), FACTS)
    bare = fix_commands(
        Cause.NETWORK_TIMEOUT, failure(kind="Pod", workload="web-7d9f-abc"), inspection(controlled=False), FACTS
    )
    unknown = fix_commands(Cause.NETWORK_TIMEOUT, failure(), None, FACTS)
    assert any(f.command == "kubectl -n shop delete pod web-7d9f-abc" and f.mutating for f in with_owner)
    assert not any("delete pod" in f.command for f in bare + unknown)


def test_platform_mismatch_reads_the_node_architecture() -> None:
    """The node's architecture is asked with a jsonpath query."""
    text = " ".join(commands(Cause.PLATFORM_MISMATCH, i=inspection()).values())
    assert (
        "kubectl get node node-1 -o 'jsonpath={.status.nodeInfo.operatingSystem}/{.status.nodeInfo.architecture}'"
        in text
    )


def test_never_pull_patch_targets_the_container_by_name() -> None:
    """The imagePullPolicy patch is a strategic merge on the named (init) container."""
    fixes = fix_commands(
        Cause.NEVER_PULL, failure(container_kind="init", kind="CronJob", workload="nightly"), None, FACTS
    )
    patch = next(f for f in fixes if " patch " in f.command)
    argv = shlex.split(patch.command)
    assert argv[3:5] == ["patch", "cronjob/nightly"]
    body = json.loads(argv[-1])
    assert body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"] == [
        {"name": "web", "imagePullPolicy": "IfNotPresent"}
    ]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("cause", list(Cause))
def test_hostile_names_stay_single_literal_arguments(name: str, cause: Cause) -> None:
    """Names with shell syntax are quoted: each appears whole inside one argument, never as syntax."""
    f = failure(ns=name, pod=name, container=name, workload=name)
    i = PodInspection(
        namespace=name,
        pod=name,
        service_account=name,
        controlled=True,
        owner_chain=(WorkloadRef("Deployment", name),),
        secrets=(SecretCheck(name=name, referenced_by="pod", exists=False),),
        node=NodeInfo(name=name),
    )
    for fix in fix_commands(cause, f, i, Facts(host=name)):
        lexer = shlex.shlex(fix.command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        operators = [t for t in tokens if t and set(t) <= set("();<>|&`$")]
        assert set(operators) <= {"|", "&&", ";"}
        simple = _simple_commands(tokens)
        assert len(simple) == len(operators) + 1 - (tokens[-1] == "fi")  # `...; fi` ends with an empty command
        for argv in simple:
            if not fix.mutating and argv[0] in ("curl", "echo", "docker"):
                continue  # read-only look-ups outside the cluster, names quoted the same way
            assert argv[0] == "kubectl" or argv == GREP_ANY
            if argv[0] == "kubectl":
                assert argv[1:3] == ["-n", name] or argv[1] in {"get", "describe", "debug"}
        if name in fix.command:
            assert any(name in token for token in tokens)


GREP_ANY = ["grep", "-q", "."]
SHELL_WORDS = {"if", "then", "else", "fi"}


def _simple_commands(tokens: list[str]) -> list[list[str]]:
    """The simple commands of a tokenised line: split at operators, with if/then/else/fi dropped."""
    out: list[list[str]] = [[]]
    for token in tokens:
        if token in {"|", "&&", ";"}:
            out.append([])
        elif not (token in SHELL_WORDS and not out[-1]):
            out[-1].append(token)
    return [argv for argv in out if argv]


FAKE_KUBECTL = """#!{python}
# Records each call's arguments as one JSON line and answers `get` with $FAKE_SA_SECRETS.
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if "get" in sys.argv[1:]:
    sys.stdout.write(os.environ["FAKE_SA_SECRETS"])
"""


def _run_link(tmp_path: Path, sa: str, current: str) -> list[list[str]]:
    """Run the ServiceAccount link command with a recording kubectl first on PATH; the calls it made."""
    # A pod without pull secrets of its own: linking to its ServiceAccount is the fix for new pods.
    fixes = fix_commands(Cause.PULL_SECRET_NOT_LINKED, failure(), replace(inspection(sa=sa), secrets=()), FACTS)
    link = next(f for f in fixes if "patch serviceaccount" in f.command)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    log = tmp_path / "calls"
    log.write_text("")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_SA_SECRETS": current}
    subprocess.run(["sh", "-c", link.command], env=env, check=True, timeout=10)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_link_appends_to_the_secrets_already_linked(tmp_path: Path) -> None:
    """With secrets already linked, one JSON patch appends the new one (a merge patch would replace the list)."""
    calls = _run_link(tmp_path, "builder", '[{"name":"existing"}]')
    assert calls[0] == ["-n", "shop", "get", "serviceaccount", "builder", "-o", "jsonpath={.imagePullSecrets}"]
    assert calls[1][:6] == ["-n", "shop", "patch", "serviceaccount", "builder", "--type=json"]
    assert json.loads(calls[1][-1]) == [{"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "regcred"}}]
    assert len(calls) == 2


def test_link_creates_the_list_when_the_service_account_has_none(tmp_path: Path) -> None:
    """Without imagePullSecrets on the ServiceAccount, the JSON patch creates the list with the secret."""
    calls = _run_link(tmp_path, "builder", "")
    assert json.loads(calls[1][-1]) == [{"op": "add", "path": "/imagePullSecrets", "value": [{"name": "regcred"}]}]
    assert len(calls) == 2


@pytest.mark.parametrize("name", HOSTILE)
def test_link_with_a_hostile_service_account_name_runs_only_kubectl(tmp_path: Path, name: str) -> None:
    """A ServiceAccount name with shell syntax is no Kubernetes name: the command names the default ServiceAccount
    (issue 18, point 7) and runs nothing but kubectl."""
    calls = _run_link(tmp_path, name, "")
    assert [call[4] for call in calls] == ["default", "default"]
    assert [call[2] for call in calls] == ["get", "patch"]


def test_rate_limit_with_credentials_already_sent_adds_no_secret() -> None:
    """Authenticating lifts an anonymous limit; a pod that already sends credentials gets no new secret."""
    fixes = fix_commands(Cause.RATE_LIMITED, failure(image="nginx:1"), inspection(), FACTS)
    assert not any("create secret" in f.command or "patch" in f.command for f in fixes)
    anonymous = fix_commands(Cause.RATE_LIMITED, failure(image="nginx:1"), replace(inspection(), secrets=()), FACTS)
    assert any("create secret" in f.command for f in anonymous)
