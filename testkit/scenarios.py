"""Diagnosis scenarios end to end: real registries, the simulated API server, the bot's diagnosis, a REAL kubectl.

Each scenario (tests/scenarios/scenarios.yaml) builds a namespace in a `SimCluster` — Deployment, ReplicaSet, pod,
ServiceAccount, Secrets, on nodes `node-amd64` (linux/amd64) and `node-arm64` (linux/arm64) — pointing at one of the
registries of the world:

- `plain`, `auth`, `tls`: Debian's `docker-registry` (plain HTTP; htpasswd Basic auth; self-signed TLS the node does
  not trust), filled with `Pusher`;
- `hub`, `hublimited`: `SimRegistry(hub=True)`, which answers as Docker Hub documents (anonymous tokens, 401
  insufficient_scope for a missing and a private repository alike, 429 with ratelimit-* on GET while HEAD answers);
- `token`: `SimRegistry` with Bearer tokens for `corp/*`; `flaky`: 503 on manifests; `closed`: nothing listens;
  `hang`: accepts and never answers.

A kubelet stand-in (`KubeletStandIn`) pulls the pod's image the way the kubelet and containerd do — only the pod's own
`spec.imagePullSecrets`, each matching credential in the keyring's order, HEAD then GET, the node's platform
against an index — and writes the waiting reason, message and `Failed` event with containerd's wording. The bot then
diagnoses the pod (`Diagnoser` with the real `Inspector` over HTTP and the real `RegistryProber`). Every mutating
command of the thread is run as posted by a real `kubectl` (the oldest and the newest installed, alternately),
with the values a user would fill in; a controller stand-in rolls out a new pod when the template changed or the
pod was deleted (ServiceAccount pull secrets are copied in only then, as the admission plugin does); the kubelet
stand-in pulls again; the scenario is fixed when that pull works.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot import imageref
from bot.diagnoser import Diagnoser
from bot.kube.client import load_api_client
from bot.kube.dockerconfig import lookup, parse_secret
from bot.kube.inspect import Inspector
from bot.model import Diagnosis, PullFailure, WorkloadRef
from bot.registry.auth import parse_challenge, token_query
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import MANIFEST_ACCEPT, RegistryProber
from bot.settings import KubeSettings, RegistrySettings
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.oci.docker_registry import Pusher, RealRegistryProcess, free_port
from testkit.oci.simregistry import SimRegistry

KUBECTL_DIRS = ("/usr/lib/google-cloud-sdk/bin", "/usr/local/bin", "/usr/bin")
NODES = {"node-amd64": ("linux", "amd64"), "node-arm64": ("linux", "arm64")}
AUTH_USER, AUTH_PASSWORD = "robot", "s3cret-pw"
HUB_USER, HUB_PASSWORD = "hubuser", "hub-pw"
TOKEN_USER, TOKEN_PASSWORD = "ci", "tok3n-pw"
PULL_TIMEOUT_S = 2.0


def find_kubectl(version: str) -> str | None:
    """The path of `kubectl.<version>` (or plain `kubectl` for "default"), or None."""
    name = "kubectl" if version == "default" else f"kubectl.{version}"
    for folder in KUBECTL_DIRS:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return shutil.which(name)


@dataclass
class Outcome:
    """What one scenario gave."""

    id: str
    cause: str
    expected: list[str]
    evidence: list[str]
    missing: list[str]  # `must` lines not found
    false_lines: list[str]  # `must_not` lines found
    commands: list[tuple[str, int, str]]  # (command, exit code, stderr tail)
    fixed: bool
    expect_fixed: bool
    after: str  # the cause re-diagnosed after the fix, or "gone"
    kubectl: str
    confidence: float
    fixes: list[str] = field(default_factory=list)
    forbid: list[str] = field(default_factory=lambda: [" create secret ", " set image ", " patch "])

    @property
    def cause_correct(self) -> bool:
        return self.cause in self.expected

    @property
    def applicable(self) -> bool:
        return all(rc == 0 for _, rc, _ in self.commands) and (bool(self.commands) or not self.expect_fixed)

    @property
    def useful(self) -> bool:
        if self.expect_fixed:
            return self.fixed
        # Nothing in the cluster can fix it: the thread must not send the user to change what cannot help.
        return not any(w in c for c, _, _ in self.commands for w in self.forbid)


# ---- the world: registries and the cluster ----


@dataclass
class World:
    cluster: SimCluster
    kubeconfig: Path
    registries: dict[str, str]  # name -> host:port
    schemes: dict[str, str]
    sims: dict[str, SimRegistry]
    workdir: Path


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[World]:
    """Start every registry and the simulated API server (HTTPS with its CA in the kubeconfig, as kubectl needs)."""
    workdir = Path(tempfile.mkdtemp(prefix="scenarios-"))
    processes: list[RealRegistryProcess] = []
    sims: dict[str, SimRegistry] = {}
    # a deleted pod terminates after 0.3 s (kubectl delete waits for it to go), as a kubelet with a short grace would
    cluster = SimCluster(check_token=False, replace_deleted_pods=False, termination_s=0.3)
    hang_server: asyncio.AbstractServer | None = None
    try:
        registries: dict[str, str] = {}
        schemes: dict[str, str] = {}
        real = await asyncio.to_thread(_real_registries, workdir, processes)
        for name, host in real.items():
            registries[name], schemes[name] = host, "https" if name == "tls" else "http"

        hub = SimRegistry(hub=True)
        hub.add_image("library/nginx", "1.25", ["linux/amd64", "linux/arm64"])
        hub.add_image("library/redis", "7.2", ["linux/amd64", "linux/arm64"])
        hub.add_image("library/postgres", "16", ["linux/amd64", "linux/arm64"])
        hub.add_image("acme/private", "1.0", ["linux/amd64"])
        hub.require_auth("acme/*", HUB_USER, HUB_PASSWORD, mode="bearer")
        limited = SimRegistry(hub=True)
        limited.add_image("library/nginx", "1.25", ["linux/amd64", "linux/arm64"])
        limited.hub_pulls_left = 0
        token = SimRegistry()
        token.add_image("corp/svc", "3.1", ["linux/amd64", "linux/arm64"])
        token.add_image("corp/svc", "3.0", ["linux/amd64", "linux/arm64"])
        token.add_image("public/tool", "1.0", ["linux/amd64"])
        token.require_auth("corp/*", TOKEN_USER, TOKEN_PASSWORD, mode="bearer")
        flaky = SimRegistry()
        flaky.add_image("team/app", "1.0")
        flaky.set_fault("server_error", on="manifests", status=503)
        for name, sim in (("hub", hub), ("hublimited", limited), ("token", token), ("flaky", flaky)):
            registries[name], schemes[name] = await sim.start(), "http"
            sims[name] = sim

        registries["closed"], schemes["closed"] = f"127.0.0.1:{free_port()}", "http"

        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reader.read()  # until the client gives up
            writer.close()

        hang_server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        hang_port = hang_server.sockets[0].getsockname()[1]
        registries["hang"], schemes["hang"] = f"127.0.0.1:{hang_port}", "http"

        await cluster.start()
        kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig")
        for node_name, (os_name, arch) in NODES.items():
            cluster.put(k8s.node(node_name, arch=arch, os=os_name))
        yield World(cluster, kubeconfig, registries, schemes, sims, workdir)
    finally:
        if hang_server is not None:
            hang_server.close()
        await cluster.stop()
        for sim in sims.values():
            await sim.stop()
        for process in processes:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _real_registries(workdir: Path, processes: list[RealRegistryProcess]) -> dict[str, str]:
    """Start and fill the docker-registry processes (plain, htpasswd, TLS); their host:port by name."""
    out: dict[str, str] = {}
    plain = RealRegistryProcess.start(workdir / "plain")
    processes.append(plain)
    push = Pusher(plain.base)
    push.index("team/app", "1.2.3", ["linux/amd64", "linux/arm64"])
    push.index("team/app", "1.2.2", ["linux/amd64", "linux/arm64"])
    push.index("team/app", "v2.0.0", ["linux/amd64", "linux/arm64"])
    push.index("team/api", "2.0.0", ["linux/amd64"])
    push.index("team/winsvc", "1.0", ["windows/amd64"])
    push.image("team/single", "1.0")
    push.index("team/worker", "3.4.1", ["linux/amd64", "linux/arm64"])
    out["plain"] = plain.host

    htpasswd = workdir / "htpasswd"
    entry = subprocess.run(["htpasswd", "-Bbn", AUTH_USER, AUTH_PASSWORD], check=True, capture_output=True).stdout
    (workdir / "auth").mkdir()
    htpasswd.write_bytes(entry.strip() + b"\n")
    auth = RealRegistryProcess.start(workdir / "auth", htpasswd=htpasswd, realm="corp-registry")
    processes.append(auth)
    Pusher(auth.base, auth=(AUTH_USER, AUTH_PASSWORD)).index("private/app", "1.0", ["linux/amd64", "linux/arm64"])
    Pusher(auth.base, auth=(AUTH_USER, AUTH_PASSWORD)).index("team/billing", "5.1", ["linux/amd64"])
    out["auth"] = auth.host

    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    tls = RealRegistryProcess.start(workdir / "tls", tls=(cert, key))
    processes.append(tls)
    Pusher(tls.base, ca_file=cert).image("team/app", "1.0")
    out["tls"] = tls.host

    return out


# ---- the kubelet stand-in ----


@dataclass
class PullResult:
    ok: bool
    reason: str = ""  # ErrImagePull, InvalidImageName, ErrImageNeverPull
    message: str = ""


class KubeletStandIn:
    """Pulls like the kubelet and containerd would, with the pod's own pull secrets only."""

    def __init__(self, w: World, session: aiohttp.ClientSession) -> None:
        self.world = w
        self.session = session

    def _scheme(self, host: str) -> str:
        for name, h in self.world.registries.items():
            if h == host:
                return self.world.schemes[name]
        return "https"

    async def pull(self, pod: dict[str, Any], container: str) -> PullResult:
        spec = pod["spec"]
        c = next(x for x in spec["containers"] if x["name"] == container)
        image = c["image"]
        ref = imageref.try_parse(image)
        if ref is None:
            return PullResult(
                False,
                "InvalidImageName",
                f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}":'
                " invalid reference format",
            )
        if c.get("imagePullPolicy") == "Never":
            return PullResult(
                False,
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        ns = pod["metadata"]["namespace"]
        configs = []
        for item in spec.get("imagePullSecrets") or ():
            secret = self.world.cluster.get("Secret", ns, item["name"])
            if secret is None:
                continue
            config = parse_secret(secret.get("type"), secret.get("data"))
            if config.parses:
                configs.append((item["name"], config))
        creds = [(e.username or "", e.password or "") for _, e in lookup(configs, ref.name) if e.has_basic]
        node = self.world.cluster.get("Node", None, spec.get("nodeName") or "")
        info = (node or {}).get("status", {}).get("nodeInfo", {})
        platform = (info.get("operatingSystem", "linux"), info.get("architecture", "amd64"))
        attempts: list[tuple[str, str] | None] = [*creds] if creds else [None]
        result = PullResult(False)
        for cred in attempts:
            result = await self._pull_once(ref, cred, platform)
            if result.ok:
                return result
        return result

    async def _pull_once(
        self, ref: imageref.ImageRef, cred: tuple[str, str] | None, platform: tuple[str, str]
    ) -> PullResult:
        full = str(ref)
        head = f'failed to pull and unpack image "{full}": failed to resolve reference "{full}"'
        base = f"{self._scheme(ref.registry)}://{ref.registry}"
        url = f"{base}/v2/{ref.repository}/manifests/{ref.reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            async with asyncio.timeout(PULL_TIMEOUT_S):
                async with self.session.get(f"{base}/v2/") as ping:
                    challenge = parse_challenge(ping.headers.get("WWW-Authenticate"))
                if challenge is not None and challenge.scheme == "basic" and cred is not None:
                    raw = f"{cred[0]}:{cred[1]}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                elif challenge is not None and challenge.scheme == "bearer" and challenge.realm:
                    token_headers = {}
                    if cred is not None:
                        raw = f"{cred[0]}:{cred[1]}".encode()
                        token_headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                    async with self.session.get(
                        challenge.realm, params=token_query(challenge, ref.repository), headers=token_headers
                    ) as tok:
                        if tok.status != 200:
                            return PullResult(
                                False,
                                "ErrImagePull",
                                f"{head}: failed to authorize: failed to fetch oauth token: unexpected status from"
                                f" GET request to {challenge.realm}: {tok.status} {tok.reason}",
                            )
                        headers["Authorization"] = "Bearer " + (await tok.json())["token"]
                async with self.session.head(url, headers=headers) as answer:
                    status, reason = answer.status, answer.reason
                    media = (answer.headers.get("Content-Type") or "").split(";")[0]
                if status == 404:
                    return PullResult(False, "ErrImagePull", f"{head}: {full}: not found")
                if status == 401:
                    if "Bearer" in headers.get("Authorization", ""):
                        return PullResult(
                            False,
                            "ErrImagePull",
                            f"{head}: pull access denied, repository does not exist or may require authorization:"
                            " server message: insufficient_scope: authorization failed",
                        )
                    return PullResult(
                        False,
                        "ErrImagePull",
                        f"{head}: unexpected status from HEAD request to {url}: 401 Unauthorized",
                    )
                if status == 403:
                    return PullResult(
                        False, "ErrImagePull", f"{head}: unexpected status from HEAD request to {url}: 403 Forbidden"
                    )
                if status >= 300:
                    return PullResult(
                        False,
                        "ErrImagePull",
                        f"{head}: unexpected status from HEAD request to {url}: {status} {reason}",
                    )
                async with self.session.get(url, headers=headers) as answer:
                    if answer.status == 429:
                        body = await answer.text()
                        return PullResult(
                            False,
                            "ErrImagePull",
                            f'failed to pull and unpack image "{full}": failed to copy: httpReadSeeker: failed open:'
                            f" unexpected status code {url}: 429 Too Many Requests - Server message: {body.strip()}",
                        )
                    if answer.status != 200:
                        return PullResult(
                            False, "ErrImagePull", f"{head}: unexpected status code {url}: {answer.status}"
                        )
                    manifest = await answer.json(content_type=None)
                if "index" in media or "list" in media:
                    offered = [
                        (m.get("platform", {}).get("os"), m.get("platform", {}).get("architecture"))
                        for m in manifest.get("manifests", [])
                    ]
                    if platform not in offered:
                        return PullResult(
                            False,
                            "ErrImagePull",
                            f'failed to pull and unpack image "{full}": no match for platform in manifest: not found',
                        )
                return PullResult(True)
        except TimeoutError:
            return PullResult(
                False,
                "ErrImagePull",
                f'{head}: failed to do request: Head "{url}": dial tcp {ref.registry}: i/o timeout',
            )
        except aiohttp.ClientConnectorCertificateError:
            return PullResult(
                False,
                "ErrImagePull",
                f'{head}: failed to do request: Head "{url}": tls: failed to verify certificate: x509: certificate'
                " signed by unknown authority",
            )
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, socket.gaierror):
                return PullResult(
                    False,
                    "ErrImagePull",
                    f'{head}: failed to do request: Head "{url}": dial tcp: lookup {ref.registry.split(":")[0]}:'
                    " no such host",
                )
            return PullResult(
                False,
                "ErrImagePull",
                f'{head}: failed to do request: Head "{url}": dial tcp {ref.registry}: connect: connection refused',
            )
        except ConnectionRefusedError:
            return PullResult(
                False,
                "ErrImagePull",
                f'{head}: failed to do request: Head "{url}": dial tcp {ref.registry}: connect: connection refused',
            )
        except (aiohttp.ClientError, ssl.SSLError) as exc:
            return PullResult(False, "ErrImagePull", f"{head}: {type(exc).__name__}")


# ---- scenarios ----


def load(path: Path) -> list[dict[str, Any]]:
    """The scenarios of a YAML file (a list under `scenarios`)."""
    data = yaml.safe_load(path.read_text())
    return list(data["scenarios"])


def _fill(value: Any, w: World) -> Any:
    if isinstance(value, str):
        for name, host in w.registries.items():
            value = value.replace("{" + name + "}", host)
        return value
    if isinstance(value, list):
        return [_fill(v, w) for v in value]
    if isinstance(value, dict):
        return {_fill(k, w): _fill(v, w) for k, v in value.items()}
    return value


def _secret_obj(spec: dict[str, Any], ns: str) -> dict[str, Any]:
    kind = spec.get("type", "dockerconfigjson")
    name = spec["name"]
    if kind == "opaque":
        auths = {k: {"username": v[0], "password": v[1]} for k, v in spec.get("auths", {}).items()}
        return k8s.opaque_secret(name, ns, {".dockerconfigjson": json.dumps({"auths": auths})})
    if kind == "malformed":
        return k8s.docker_config_secret(name, ns, raw=spec.get("raw", "{not json"))
    auths = {k: {"username": v[0], "password": v[1]} for k, v in spec.get("auths", {}).items()}
    return k8s.docker_config_secret(name, ns, auths=auths, legacy=kind == "dockercfg")


class Runner:
    """Runs scenarios in one world, one namespace each."""

    def __init__(self, w: World, session: aiohttp.ClientSession, kubectls: list[str]) -> None:
        self.world = w
        self.kubelet = KubeletStandIn(w, session)
        self.kubectls = kubectls
        self._count = 0
        self._bin = w.workdir / "bin"

    async def run(self, raw: dict[str, Any], diagnoser: Diagnoser) -> Outcome:
        s = _fill(raw, self.world)
        ns = s["id"]
        c = self.world.cluster
        c.put(k8s.namespace(ns))
        for spec in s.get("secrets", []):
            c.put(_secret_obj(spec, ns))
        c.put(k8s.service_account("default", ns, s.get("sa_secrets", [])))
        deploy = k8s.deployment("app", ns, s["image"])
        tmpl = deploy["spec"]["template"]["spec"]
        tmpl["containers"][0]["name"] = "app"
        if s.get("pull_policy"):
            tmpl["containers"][0]["imagePullPolicy"] = s["pull_policy"]
        template_secrets = s.get("template_secrets", s.get("pod_secrets") or None)
        if template_secrets:
            tmpl["imagePullSecrets"] = [{"name": n} for n in template_secrets]
        rs = k8s.replicaset(deploy)
        c.put(deploy)
        c.put(rs)
        pod = self._new_pod(rs, ns, s.get("node", "node-amd64"), pod_secrets=s.get("pod_secrets"))
        kubectl = self.kubectls[self._count % len(self.kubectls)]
        self._count += 1
        first = await self._settle(pod)
        if first.ok:
            raise AssertionError(f"scenario {ns}: the first pull works; the scenario is wrong")
        if s.get("push_after"):
            # CI pushed the tag after the rollout began: the registry serves it by the time the bot looks.
            registry, repo, tag = s["push_after"]
            if registry in self.world.sims:
                self.world.sims[registry].add_image(repo, tag)
            else:
                Pusher(f"http://{self.world.registries[registry]}").index(repo, tag, ["linux/amd64", "linux/arm64"])
        failure = self._failure(c.get("Pod", ns, pod["metadata"]["name"]) or pod, first)
        diagnosis = await diagnoser.diagnose(failure)
        texts = [e.text for e in diagnosis.evidence] + [diagnosis.summary]
        expect = s["expect"]
        missing = [m for m in expect.get("must", []) if not any(m.lower() in t.lower() for t in texts)]
        commands_text = [f.command for f in diagnosis.fixes]
        missing += [f"fix: {m}" for m in expect.get("fix_must", []) if not any(m in t for t in commands_text)]
        false_lines = [m for m in expect.get("must_not", []) for t in texts if m.lower() in t.lower()]
        commands = await self._apply(diagnosis, s.get("user", {}), kubectl)
        fixed, after = await self._after(ns, pod, diagnoser)
        return Outcome(
            id=ns,
            cause=diagnosis.cause.value,
            expected=list(expect["cause"]) if isinstance(expect["cause"], list) else [expect["cause"]],
            evidence=texts,
            missing=missing,
            false_lines=false_lines,
            commands=commands,
            fixed=fixed,
            expect_fixed=bool(expect.get("fixed", True)),
            after=after,
            kubectl=Path(kubectl).name,
            confidence=diagnosis.confidence,
            fixes=[f.command for f in diagnosis.fixes],
            **({"forbid": list(expect["forbid"])} if "forbid" in expect else {}),
        )

    def _new_pod(
        self, rs: dict[str, Any], ns: str, node: str, *, pod_secrets: list[str] | None = None
    ) -> dict[str, Any]:
        """A pod from the ReplicaSet's template, admitted (ServiceAccount pull secrets copied when it lists none)."""
        pod = k8s.pod_for(rs, 0)
        pod["metadata"]["name"] = f"app-{uuid.uuid4().hex[:5]}"
        spec = pod["spec"]
        tmpl = copy.deepcopy(rs["spec"]["template"]["spec"])
        spec["containers"] = tmpl["containers"]
        for key in ("imagePullSecrets", "nodeSelector"):
            spec.pop(key, None)
            if tmpl.get(key):
                spec[key] = tmpl[key]
        if pod_secrets is not None:
            spec.pop("imagePullSecrets", None)
            if pod_secrets:
                spec["imagePullSecrets"] = [{"name": n} for n in pod_secrets]
        elif not spec.get("imagePullSecrets"):
            sa = self.world.cluster.get("ServiceAccount", ns, spec.get("serviceAccountName") or "default") or {}
            if sa.get("imagePullSecrets"):
                spec["imagePullSecrets"] = copy.deepcopy(sa["imagePullSecrets"])
        selector = spec.get("nodeSelector") or {}
        for name, (os_name, arch) in NODES.items():
            labels = {"kubernetes.io/os": os_name, "kubernetes.io/arch": arch, "kubernetes.io/hostname": name}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                node = name
                break
        spec["nodeName"] = node
        pod["status"]["containerStatuses"] = [k8s.running_status("app", spec["containers"][0]["image"])]
        return self.world.cluster.put(pod)

    async def _settle(self, pod: dict[str, Any]) -> PullResult:
        result = await self.kubelet.pull(pod, "app")
        c = self.world.cluster
        if result.ok:
            c.put(k8s.set_running(pod, "app"))
        else:
            c.put(k8s.set_waiting(pod, "app", result.reason, result.message))
            c.put(k8s.failed_pull_event(pod, "app", result.message))
        return result

    def _failure(self, pod: dict[str, Any], result: PullResult) -> PullFailure:
        meta = pod["metadata"]
        return PullFailure(
            cluster="scenarios",
            namespace=meta["namespace"],
            pod=meta["name"],
            pod_uid=meta.get("uid", ""),
            container="app",
            container_kind="container",
            image=pod["spec"]["containers"][0]["image"],
            waiting_reason=result.reason,
            message=result.message,
            workload=WorkloadRef("Deployment", "app"),
            node=pod["spec"].get("nodeName"),
            event_reason="Failed",
        )

    async def _apply(self, diagnosis: Diagnosis, user: dict[str, str], kubectl: str) -> list[tuple[str, int, str]]:
        """Run the thread's mutating commands as posted, with a real kubectl first on PATH."""
        bin_dir = self._bin / Path(kubectl).name
        if not bin_dir.exists():
            bin_dir.mkdir(parents=True)
            (bin_dir / "kubectl").symlink_to(kubectl)
        env = {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(self.world.kubeconfig),
            "HOME": str(self.world.workdir),
            "REGISTRY_USER": user.get("username", "someone"),
            "REGISTRY_PASSWORD": user.get("password", "not-the-password"),
        }
        if "new_tag" in user:
            env["NEW_TAG"] = user["new_tag"]
        if "fixed_image" in user:
            env["FIXED_IMAGE"] = user["fixed_image"]
        out: list[tuple[str, int, str]] = []
        for fix in diagnosis.fixes:
            cmd = fix.command
            if not fix.mutating or not cmd.startswith(("kubectl", "if kubectl")) or cmd.startswith("kubectl debug"):
                continue
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            out.append((cmd, proc.returncode or 0, err.decode(errors="replace")[-300:]))
        return out

    async def _after(self, ns: str, old: dict[str, Any], diagnoser: Diagnoser) -> tuple[bool, str]:
        """Controller stand-in, then the kubelet stand-in pulls again; re-diagnose when it still fails."""
        c = self.world.cluster
        deploy = c.get("Deployment", ns, "app")
        rs = c.list("ReplicaSet", ns)[0]
        current = c.get("Pod", ns, old["metadata"]["name"])
        assert deploy is not None
        template = deploy["spec"]["template"]
        changed = template["spec"] != rs["spec"]["template"]["spec"]
        if changed:
            rs["spec"]["template"] = copy.deepcopy(template)
            rs = c.put(rs)
        if current is None or changed:
            if current is not None:
                c.delete("Pod", ns, current["metadata"]["name"])
            node = old["spec"].get("nodeName") or "node-amd64"
            current = self._new_pod(rs, ns, node)
        result = await self._settle(current)
        if result.ok:
            return True, "gone"
        pod = c.get("Pod", ns, current["metadata"]["name"]) or current
        again = await diagnoser.diagnose(self._failure(pod, result))
        return False, again.cause.value


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """The bench line: counts over the scenarios."""
    return {
        "n": len(outcomes),
        "cause_correct": sum(o.cause_correct for o in outcomes),
        "fix_useful": sum(o.useful for o in outcomes),
        "fix_applicable": sum(o.applicable for o in outcomes),
        "evidence_false": sum(len(o.false_lines) for o in outcomes),
    }


async def run_all(path: Path, kubectl_versions: tuple[str, ...] = ("1.27", "1.33")) -> list[Outcome]:
    """Run every scenario of `path`; kubectl versions alternate between scenarios."""
    kubectls = [k for k in (find_kubectl(v) for v in kubectl_versions) if k]
    if not kubectls:
        raise RuntimeError("no kubectl found")
    scenarios = load(path)
    async with world() as w, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        api = await load_api_client(KubeSettings(kubeconfig=w.kubeconfig))
        insecure = [h for n, h in w.registries.items() if w.schemes[n] == "http"]
        prober = RegistryProber(
            RegistrySettings(
                allow_networks=list(LOOPBACK_NETWORKS),
                probe_budget_s=2.0,
                insecure_registries=insecure,
                cache_ttl_s=0.0,
            )
        )
        try:
            diagnoser = Diagnoser(Inspector(api, timeout_s=3.0), prober, fresh=True)
            runner = Runner(w, session, kubectls)
            return [await runner.run(s, diagnoser) for s in scenarios]
        finally:
            await prober.close()
            await api.close()


def report(outcomes: list[Outcome]) -> str:
    """One line per scenario that missed something, for logs."""
    lines = []
    for o in outcomes:
        problems = []
        if not o.cause_correct:
            problems.append(f"cause {o.cause} (expected {'|'.join(o.expected)})")
        if o.missing:
            problems.append(f"missing {o.missing}")
        if o.false_lines:
            problems.append(f"false {o.false_lines}")
        if not o.applicable:
            problems.append(f"commands {[(c[:80], rc, e[-120:]) for c, rc, e in o.commands if rc]}")
        if not o.useful:
            problems.append(f"not fixed (after: {o.after}; fixes {[f[:100] for f in o.fixes]})")
        if problems:
            lines.append(f"{o.id} [{o.kubectl}, {o.confidence}]: " + "; ".join(problems))
    return "\n".join(lines)
