"""The bench's world in its own process: `python -m testkit.simserver --pods N --failing-fraction F --workdir DIR`.

Starts a SimCluster holding N pods (Deployments of `--per-workload` pods; a fraction of the workloads fail to pull,
with their events), a SimRegistry and a FakeSlackApi, writes DIR/kubeconfig and prints ONE JSON line with where they
listen; then serves until stdin closes or SIGTERM. bench.memory runs the bot in another process, so the bot's RSS
does not include the simulator's objects.

With `--storm M`, M of the N pods belong to workloads of `--storm-per-workload` pods that run at first and fail all
at once when a `storm` line arrives on stdin (bench.scale): every other one is on a second registry that starts
answering 503 (a registry outage: one registry-level cause), the others lose their tag (a retention policy deleted it:
one workload-level cause each). Each workload has its own image, no pull secret and runs on amd64 nodes, so the
distinct failing (image, credentials, platform) are the storm's workloads. Lines on stdin, one JSON line answered:
- `storm [RAMP_S]`: flip the storm's pods to ErrImagePull with kubelet's Failed event, spread over RAMP_S seconds,
  one pod of each workload in turn;
  answers `{"storm_started": monotonic, "storm_flipped": n, "storm_done": monotonic}` once all are flipped;
- `calls`: `{"slack_calls": n}`;
- `stats`: what the fake Slack and the registries saw (`slack_calls`, `calls_by_method`, `parents` per incident key,
  `first_reply_at` per incident key, `registry_requests`). Times are `time.monotonic()`, which is system-wide on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.kube.objectstore import resource_for
from testkit.oci.simregistry import SimRegistry
from testkit.slack.web_api import FakeSlackApi
from testkit.world import (
    CHANNEL,
    DNS_HOST,
    BenchKubelet,
    Workload,
    dns_error,
    first_reply_at,
    not_found_error,
    parents_by_incident,
    setup_logging,
    sim_world,
    status_error,
)


def plan(pods: int, failing_fraction: float, per_workload: int, registry: str) -> list[Workload]:
    """Workloads of `per_workload` pods; every k-th fails (wrong tag or unresolvable host) so about `failing_fraction`
    of the pods fail."""
    count = max(1, -(-pods // per_workload))
    failing = round(count * failing_fraction) or (1 if failing_fraction > 0 else 0)
    step = count / failing if failing else 0.0
    failing_at = {int(i * step) for i in range(failing)}
    out: list[Workload] = []
    for i in range(count):
        replicas = min(per_workload, pods - i * per_workload)
        ns = f"ns-{i % 25}"
        name = f"app-{i}"
        if i not in failing_at:
            out.append(Workload(ns, name, f"{registry}/apps/app{i}:1.0", replicas, None))
        elif len(out) % 2 == 0:
            image = f"{registry}/apps/app{i}:9.9.9"
            out.append(Workload(ns, name, image, replicas, not_found_error(image)))
        else:
            image = f"{DNS_HOST}/apps/app{i}:1.0"
            out.append(Workload(ns, name, image, replicas, dns_error(image, DNS_HOST)))
    return out


@dataclass(frozen=True, slots=True)
class StormWorkload:
    """A workload that runs until the storm, then fails with `error` (containerd's text after the image ref)."""

    workload: Workload
    error: str


def storm_plan(failing: int, per_workload: int, registry: str, outage_registry: str) -> list[StormWorkload]:
    """`failing` pods in workloads of `per_workload`; every other workload is on the registry that goes down."""
    out: list[StormWorkload] = []
    count = -(-failing // per_workload) if failing > 0 else 0
    for i in range(count):
        replicas = min(per_workload, failing - i * per_workload)
        ns = f"storm-{i % 10}"
        if i % 2 == 0:
            image = f"{outage_registry}/core/svc{i}:2.0"
            error = status_error(image, outage_registry, "503 Service Unavailable")
        else:
            image = f"{registry}/shop/svc{i}:2.0"  # never pushed: the tag is gone when the pods are rescheduled
            error = not_found_error(image)
        out.append(StormWorkload(Workload(ns, f"svc-{i}", image, replicas, None), error))
    return out


class StormWorld:
    """The started world and the storm's bookkeeping, answering the commands read from stdin."""

    def __init__(
        self, cluster: SimCluster, fake: FakeSlackApi, registries: list[SimRegistry], storm: list[StormWorkload]
    ) -> None:
        self.cluster = cluster
        self.fake = fake
        self.registries = registries
        self.storm = storm
        self.pod_names: dict[tuple[str, str], list[str]] = {}

    async def run_storm(self, ramp_s: float) -> dict[str, Any]:
        """Flip every storm pod to ErrImagePull (with its Failed event) over `ramp_s` seconds, taking one pod of
        each workload in turn: a registry outage reaches every workload's pods at their next pull, not one workload
        after the other."""
        started = time.monotonic()
        self.registries[-1].set_fault("server_error", on="manifests", status=503)
        queues = [(s, list(self.pod_names.get((s.workload.namespace, s.workload.name), []))) for s in self.storm]
        total = sum(len(names) for _, names in queues)
        flipped = 0
        while any(names for _, names in queues):
            for s, names in queues:
                if not names:
                    continue
                w = s.workload
                current = self.cluster.get("Pod", w.namespace, names.pop(0))
                if current is None:
                    continue
                message = k8s.pull_error(w.image, s.error)
                pod = self.cluster.put(k8s.set_waiting(current, w.name, "ErrImagePull", message))
                self.cluster.put(k8s.failed_pull_event(pod, w.name, message))
                flipped += 1
                due = started + ramp_s * flipped / max(1, total)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        return {"storm_started": started, "storm_flipped": flipped, "storm_done": time.monotonic()}

    def stats(self) -> dict[str, Any]:
        """What the fake Slack and the registries saw."""
        calls = list(self.fake.calls)
        parents = parents_by_incident(calls)
        methods: dict[str, int] = {}
        for call in calls:
            methods[call.method] = methods.get(call.method, 0) + 1
        return {
            "slack_calls": len(calls),
            "calls_by_method": methods,
            "parents": parents,
            "first_reply_at": {key: first_reply_at(calls, key) for key in parents},
            "slack_429_by_tier": dict(self.fake.throttled),
            "registry_requests": sum(len(r.requests) for r in self.registries),
        }


async def serve(
    pods: int,
    failing_fraction: float,
    per_workload: int,
    workdir: Path,
    storm: int = 0,
    storm_per_workload: int = 500,
    channels: int = 0,
) -> None:
    """Start everything, print the JSON line, answer stdin's commands until its EOF or a signal."""
    registry, outage = SimRegistry(), SimRegistry()
    host = await registry.start()
    outage_host = await outage.start()
    try:
        async with sim_world(workdir) as (cluster, fake, kubeconfig):
            started = time.monotonic()
            for i in range(channels):
                fake.add_channel(f"{CHANNEL}-{i}")
            kubelet = BenchKubelet(cluster)
            stormy = storm_plan(min(storm, pods), max(1, storm_per_workload), host, outage_host)
            workloads = plan(pods - sum(s.workload.replicas for s in stormy), failing_fraction, per_workload, host)
            for w in workloads:
                registry.add_image(w.image.split("/", 1)[1].rsplit(":", 1)[0], "1.0")
                kubelet.start(w)
                kubelet.pods.clear()  # the cluster holds them; nothing here needs them again
            world = StormWorld(cluster, fake, [registry, outage], stormy)
            for s in stormy:
                w = s.workload
                if w.image.startswith(outage_host):
                    outage.add_image(w.image.split("/", 1)[1].rsplit(":", 1)[0], "2.0")
                made = kubelet.start(w)
                # Pod names end in a random suffix: two of one workload may collide (the second replaces the first).
                world.pod_names[(w.namespace, w.name)] = sorted({p["metadata"]["name"] for p in made})
                kubelet.pods.clear()
            info = {
                "kube": cluster.url,
                "kubeconfig": str(kubeconfig),
                "slack": fake.url,
                "registry": host,
                "registries": [host, outage_host],
                "pods": cluster.store.count(resource_for("pods")),
                "failing": sum(w.replicas for w in workloads if w.error is not None),
                "storm": sum(len(names) for names in world.pod_names.values()),
                "storm_workloads": len(stormy),
                # Each storm workload has its own image, no pull secret, amd64 nodes: one (image, credentials,
                # platform) each.
                "distinct_failing_keys": len({(s.workload.image, (), "linux/amd64") for s in stormy}),
                "seconds_to_populate": round(time.monotonic() - started, 2),
            }
            print(json.dumps(info), flush=True)
            await _serve_commands(world)
    finally:
        await registry.stop()
        await outage.stop()


async def _serve_commands(world: StormWorld) -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lines.put_nowait, None)

    def read_lines() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_lines, name="stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        words = line.split()
        if not words:
            continue
        answer: dict[str, Any]
        if words[0] == "storm":
            answer = await world.run_storm(float(words[1]) if len(words) > 1 else 10.0)
        elif words[0] == "calls":
            answer = {"slack_calls": len(world.fake.calls)}
        elif words[0] == "stats":
            answer = world.stats()
        else:
            answer = {"error": f"unknown command {words[0]!r}"}
        print(json.dumps(answer), flush=True)


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m testkit.simserver")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--failing-fraction", type=float, default=0.05)
    parser.add_argument("--per-workload", type=int, default=50)
    parser.add_argument("--storm", type=int, default=0, help="pods (of --pods) that fail on the `storm` command")
    parser.add_argument("--storm-per-workload", type=int, default=500)
    parser.add_argument("--channels", type=int, default=0, help="extra Slack channels #imagepull-bench-0, -1, ...")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    asyncio.run(
        serve(
            args.pods,
            args.failing_fraction,
            max(1, args.per_workload),
            args.workdir,
            max(0, args.storm),
            args.storm_per_workload,
            max(0, args.channels),
        )
    )


if __name__ == "__main__":
    main()
