"""The bench's world in its own process: `python -m testkit.simserver --pods N --failing-fraction F --workdir DIR`.

Starts a SimCluster holding N pods (Deployments of `--per-workload` pods; a fraction of the workloads fail to pull,
with their events), a SimRegistry and a FakeSlackApi, writes DIR/kubeconfig and prints ONE JSON line with where they
listen; then serves until stdin closes or SIGTERM. bench.memory runs the bot in another process, so the bot's RSS
does not include the simulator's objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

from testkit.oci.simregistry import SimRegistry
from testkit.world import DNS_HOST, BenchKubelet, Workload, dns_error, not_found_error, setup_logging, sim_world


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


async def serve(pods: int, failing_fraction: float, per_workload: int, workdir: Path) -> None:
    """Start everything, print the JSON line, wait for stdin EOF or a signal."""
    registry = SimRegistry()
    host = await registry.start()
    try:
        async with sim_world(workdir) as (cluster, fake, kubeconfig):
            started = time.monotonic()
            kubelet = BenchKubelet(cluster)
            workloads = plan(pods, failing_fraction, per_workload, host)
            for w in workloads:
                registry.add_image(w.image.split("/", 1)[1].rsplit(":", 1)[0], "1.0")
                kubelet.start(w)
            kubelet.pods.clear()  # the cluster holds them; nothing here needs them again
            failing = sum(w.replicas for w in workloads if w.error is not None)
            info = {
                "kube": cluster.url,
                "kubeconfig": str(kubeconfig),
                "slack": fake.url,
                "registry": host,
                "pods": sum(w.replicas for w in workloads),
                "failing": failing,
                "seconds_to_populate": round(time.monotonic() - started, 2),
            }
            print(json.dumps(info), flush=True)
            await _until_told_to_stop()
    finally:
        await registry.stop()


async def _until_told_to_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def read_to_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_to_eof, name="stdin-eof", daemon=True).start()
    await stop.wait()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m testkit.simserver")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--failing-fraction", type=float, default=0.05)
    parser.add_argument("--per-workload", type=int, default=50)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    asyncio.run(serve(args.pods, args.failing_fraction, max(1, args.per_workload), args.workdir))


if __name__ == "__main__":
    main()
