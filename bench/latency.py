"""Failure-to-thread latency: `python -m bench.latency [--runs 30]` prints one JSON object as its last line.

Each run creates a new Deployment whose image tag does not exist in a local registry (a real `docker-registry serve`
on loopback, or SimRegistry when the binary is absent) and measures, with the fake Slack API's own receive times,
from the moment the pod is put into the simulated cluster to the moment the diagnosis reply reaches the thread.
The bot runs with production settings: watcher, Inspector over the sim API, registry probe (which lists tags).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.composition import Bot
from testkit.inprocess import running_bot
from testkit.oci.docker_registry import Pusher, RealRegistryProcess, RegistryUnavailable
from testkit.oci.simregistry import SimRegistry
from testkit.slack.web_api import FakeSlackApi
from testkit.world import (
    BenchKubelet,
    Workload,
    bench_settings,
    first_reply_at,
    not_found_error,
    percentile,
    setup_logging,
    sim_world,
)

log = logging.getLogger("bench.latency")

REPO = "team/app"
TAGS = ("1.0.0", "1.0.1", "1.1.0", "2.0.0")


@contextlib.asynccontextmanager
async def local_registry(folder: Path, force_sim: bool) -> AsyncIterator[tuple[str, str]]:
    """A registry holding team/app with a few tags; yields (host, "docker-registry" | "sim")."""
    if not force_sim:
        try:
            real = await asyncio.to_thread(RealRegistryProcess.start, folder)
        except RegistryUnavailable as exc:
            log.warning("falling back to SimRegistry: %s", exc)
        else:
            try:
                pusher = Pusher(real.base)
                for tag in TAGS:
                    await asyncio.to_thread(pusher.image, REPO, tag)
                yield real.host, "docker-registry"
            finally:
                await asyncio.to_thread(real.stop)
            return
    sim = SimRegistry()
    host = await sim.start()
    try:
        for tag in TAGS:
            sim.add_image(REPO, tag)
        yield host, "sim"
    finally:
        await sim.stop()


async def measure(runs: int, gap_s: float, force_sim: bool, timeout_s: float) -> dict[str, Any]:
    """Run the bench and return its JSON figures."""
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = Path(tmp)
        async with (
            local_registry(workdir / "registry", force_sim) as (host, kind),
            sim_world(workdir) as (cluster, fake, kubeconfig),
        ):
            kubelet = BenchKubelet(cluster)
            kubelet.namespace("latency")
            settings = bench_settings(workdir, kubeconfig, fake.url, [host])
            latencies: list[float] = []
            async with running_bot(settings) as runner:
                bot = runner.bot
                for i in range(runs):
                    image = f"{host}/{REPO}:9.{i}.0"
                    w = Workload("latency", f"app-{i}", image, 1, not_found_error(image))
                    first_call = len(fake.calls)
                    started = time.monotonic()
                    kubelet.start(w)
                    key = await _incident_key(bot, w, started + timeout_s)
                    reply_at = await _reply_at(fake, first_call, key, started + timeout_s)
                    latencies.append((reply_at - started) * 1000)
                    log.info("run %d: %.1f ms", i, latencies[-1])
                    await asyncio.sleep(gap_s)
    return {
        "runs": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "max_ms": round(max(latencies), 1),
        "registry": kind,
        "gap_s": gap_s,
    }


async def _incident_key(bot: Bot, w: Workload, deadline: float) -> str:
    while time.monotonic() < deadline:
        for inc in bot.book.open_incidents():
            if inc.namespace == w.namespace and inc.workload.name == w.name:
                return str(inc.key)
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no incident for {w.namespace}/{w.name}")


async def _reply_at(fake: FakeSlackApi, first_call: int, key: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        at = first_reply_at(fake.calls[first_call:], key)
        if at is not None:
            return at
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no diagnosis reply for incident {key}")


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--gap",
        type=float,
        default=2.0,
        help="seconds between runs; each run posts 2 messages and the outbox paces 1 msg/s per channel, so a "
        "shorter gap measures the pacer's queue (about 0.5 s at 1.5) rather than the pipeline",
    )
    parser.add_argument("--sim-registry", action="store_true", help="use SimRegistry even if docker-registry exists")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up on one run after this long")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    result = asyncio.run(measure(args.runs, args.gap, args.sim_registry, args.timeout))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
