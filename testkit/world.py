"""A simulated world for benchmarks and tests: a started SimCluster and fake Slack, a kubelet stand-in
(`BenchKubelet`) that writes pod statuses and events with the texts containerd and kubelet produce, and helpers that
read what reached the fake Slack. The bot itself runs through `testkit.inprocess.running_bot` (`bot.runtime.run_bot`).
Logs go to stderr; each bench prints one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.settings import HASettings, IncidentSettings, KubeSettings, RegistrySettings, Settings, SlackSettings
from bot.slack.outbox import PARENT_EVENT, REPLY_EVENT
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.slack.web_api import Call, FakeSlackApi

log = logging.getLogger("bench")

CLUSTER = "bench"
CHANNEL = "#imagepull-bench"
NODES = ("node-a", "node-b")
DNS_HOST = "registry.corp.invalid"  # never resolves (.invalid is reserved)


def setup_logging(level: str = "WARNING") -> None:
    """Logs to stderr only (stdout carries the bench's JSON line)."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def rss_mb() -> float:
    """This process's resident set size (VmRSS) in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def migrate_in_child(database_url: str) -> None:
    """Bring the database to head in a child process, as the Helm chart's migration Job does before the bot starts:
    the bot then finds the schema at head and never imports Alembic (benches measure its resident memory)."""
    code = "import asyncio, sys\nfrom bot.store.migrate import upgrade\nasyncio.run(upgrade(sys.argv[1]))\n"
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, database_url)
    if await child.wait() != 0:
        raise RuntimeError(f"migrating {database_url} failed")


def bench_settings(
    workdir: Path,
    kubeconfig: Path,
    slack_url: str,
    insecure_registries: Sequence[str],
    *,
    incidents: IncidentSettings | None = None,
    log_level: str = "WARNING",
) -> Settings:
    """Production defaults except what the bench must point somewhere: SQLite in `workdir`, the sim, the fake Slack."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        log_level=log_level,
        metrics_port=0,
        slack=SlackSettings(
            bot_token=SecretStr("xoxb-bench-not-a-real-token"), base_url=slack_url, default_channel=CHANNEL
        ),
        kube=KubeSettings(kubeconfig=kubeconfig, cluster_name=CLUSTER, exclude_namespaces=["kube-system"]),
        registry=RegistrySettings(
            insecure_registries=list(insecure_registries), allow_networks=["127.0.0.0/8", "::1/128"]
        ),
        incidents=incidents or IncidentSettings(),
        ha=HASettings(identity=f"bench-{os.getpid()}"),
    )


@contextlib.asynccontextmanager
async def sim_world(workdir: Path) -> AsyncIterator[tuple[SimCluster, FakeSlackApi, Path]]:
    """A started SimCluster (two amd64 nodes) and FakeSlackApi; yields them and the kubeconfig path."""
    cluster = SimCluster(bookmark_interval_s=5.0, replace_deleted_pods=True)
    fake = FakeSlackApi()
    await cluster.start()
    try:
        await fake.start()
        fake.add_channel(CHANNEL)
        try:
            cluster.put(k8s.namespace("default"))  # the Lease lives there
            for name in NODES:
                cluster.put(k8s.node(name, arch="amd64"))
            kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig")
            yield cluster, fake, kubeconfig
        finally:
            await fake.close()
    finally:
        await cluster.stop()


@dataclass(frozen=True, slots=True)
class Workload:
    """A Deployment the bench creates; `error` is containerd's text after the image ref (None: it runs)."""

    namespace: str
    name: str
    image: str
    replicas: int
    error: str | None
    pull_secrets: tuple[str, ...] = ()
    event_reason_secret: bool = False  # also kubelet's FailedToRetrieveImagePullSecret warning


def resolve_error(image: str, tail: str) -> str:
    """containerd's `failed to resolve reference "<ref>": <tail>`."""
    return f'failed to resolve reference "{k8s.containerd_ref(image)}": {tail}'


def not_found_error(image: str) -> str:
    """containerd's text for a tag or repository that does not exist."""
    ref = k8s.containerd_ref(image)
    return resolve_error(image, f"{ref}: not found")


def status_error(image: str, host: str, status: str) -> str:
    """containerd's text for an HTTP error status from the registry on the manifest request."""
    tag = k8s.containerd_ref(image).rsplit(":", 1)[-1]
    return resolve_error(image, f"pulling from host {host} failed with status code [manifests {tag}]: {status}")


def dns_error(image: str, host: str) -> str:
    """containerd's text for a registry host that does not resolve."""
    path = k8s.containerd_ref(image).split("/", 1)[1]
    repo, _, tag = path.rpartition(":")
    return resolve_error(
        image,
        f'failed to do request: Head "https://{host}/v2/{repo}/manifests/{tag}": '
        f"dial tcp: lookup {host} on 10.96.0.10:53: no such host",
    )


class BenchKubelet:
    """Plays kubelet and the controllers: workloads, their pods, pull-failure statuses and events."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._namespaces: set[str] = set()

    def namespace(self, name: str) -> None:
        """Create a namespace and its default ServiceAccount (once)."""
        if name not in self._namespaces:
            if self.cluster.get("Namespace", None, name) is None:
                self.cluster.put(k8s.namespace(name))
            if self.cluster.get("ServiceAccount", name, "default") is None:
                self.cluster.put(k8s.service_account("default", name))
            self._namespaces.add(name)

    def start(self, w: Workload, *, events: bool = True) -> list[dict[str, Any]]:
        """Create the workload's Deployment, ReplicaSet and pods (waiting on ErrImagePull when `w.error`)."""
        self.namespace(w.namespace)
        deploy = k8s.deployment(w.name, w.namespace, w.image, w.replicas)
        rs = k8s.replicaset(deploy)
        self.cluster.put(deploy)
        self.cluster.put(rs)
        pods = [self._pod(w, rs, i, events=events) for i in range(w.replicas)]
        self.pods[(w.namespace, w.name)] = pods
        return pods

    def _pod(self, w: Workload, rs: dict[str, Any], i: int, *, events: bool) -> dict[str, Any]:
        node = NODES[i % len(NODES)]
        if w.error is None:
            return self.cluster.put(k8s.set_running(k8s.pod_for(rs, i, node_name=node), w.name))
        message = k8s.pull_error(w.image, w.error)
        secrets = list(w.pull_secrets)
        if not secrets:
            # The ServiceAccount admission plugin copies the SA's pull secrets into a pod that lists none.
            sa = self.cluster.get("ServiceAccount", w.namespace, "default") or {}
            secrets = [ref["name"] for ref in sa.get("imagePullSecrets") or () if ref.get("name")]
        pod = k8s.pod_for(
            rs, i, waiting={w.name: ("ErrImagePull", message)}, node_name=node, image_pull_secrets=secrets
        )
        pod = self.cluster.put(pod)
        if events:
            self.cluster.put(k8s.failed_pull_event(pod, w.name, message))
            if w.event_reason_secret and w.pull_secrets:
                self.cluster.put(k8s.missing_pull_secret_event(pod, w.pull_secrets))
        return pod

    def back_off(self, workloads: Iterable[Workload]) -> int:
        """kubelet's ImagePullBackOff after the first failure (generic text): a flip that is no new failure."""
        flipped = 0
        for w in workloads:
            for pod in self.pods.get((w.namespace, w.name), []):
                current = self.cluster.get("Pod", w.namespace, pod["metadata"]["name"])
                if current is None:
                    continue
                self.cluster.put(k8s.set_waiting(current, w.name, "ImagePullBackOff"))
                flipped += 1
        return flipped


def parents_by_incident(calls: Iterable[Call]) -> dict[str, int]:
    """How many top-level messages were posted for each incident key (from the parents' message metadata)."""
    counts: dict[str, int] = {}
    for call in calls:
        if call.method != "chat.postMessage" or call.payload.get("thread_ts"):
            continue
        key = _incident_key(call, PARENT_EVENT)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return counts


def first_reply_at(calls: Iterable[Call], incident_key: str) -> float | None:
    """When (monotonic) the first thread reply of an incident reached the fake: its diagnosis."""
    for call in calls:
        reply = call.method == "chat.postMessage" and call.payload.get("thread_ts")
        if reply and _incident_key(call, REPLY_EVENT) == incident_key:
            return call.at
    return None


def _incident_key(call: Call, event: str) -> str | None:
    meta = call.payload.get("metadata")
    if not isinstance(meta, dict) or meta.get("event_type") != event:
        return None
    payload = meta.get("event_payload")
    return str(payload.get("incident_key")) if isinstance(payload, dict) else None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
