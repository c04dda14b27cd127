"""Pull-failure storm: `python -m bench.storm --pods N [--workloads 20] [--registries 2]`; last stdout line is JSON.

N pods of `--workloads` Deployments start failing within `--ramp` seconds on the simulated cluster, for several
causes across SimRegistries (a private one with missing tags, Basic auth and a workload whose pull secret does not
exist; a Docker-Hub-like one answering 429) and an unresolvable registry host. Then kubelet flips every pod to
ImagePullBackOff (no new failure). The bot runs in production settings until Slack has been quiet for longer than
the parent-update interval. Figures: distinct incidents stored, every Web API call the fake Slack recorded, the
time from the first pod to the last incident's diagnosis reply, and `duplicates` (parents beyond the first for an
incident key, from the parents' message metadata: must be 0). The fake Slack enforces Slack's Tier rate limits
(chat.update, conversations.history/replies, users.info, usergroups.users.list), so the figures include Slack's own
429s (`slack_429_by_tier`), not only the bot's pacing.
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
from testkit.oci.simregistry import SimRegistry
from testkit.slack.web_api import FakeSlackApi
from testkit.world import (
    DNS_HOST,
    BenchKubelet,
    Workload,
    bench_settings,
    dns_error,
    first_reply_at,
    not_found_error,
    parents_by_incident,
    setup_logging,
    sim_world,
    status_error,
)

log = logging.getLogger("bench.storm")

KINDS = ("tag_not_found", "auth", "secret_missing", "rate_limited", "dns")


def plan(workloads: int, pods: int, hosts: list[str]) -> list[Workload]:
    """`workloads` failing Deployments sharing `pods` replicas, causes cycling through KINDS."""
    private, hub = hosts[0], hosts[-1]
    out: list[Workload] = []
    for i in range(workloads):
        replicas = pods // workloads + (1 if i < pods % workloads else 0)
        kind = KINDS[i % len(KINDS)]
        ns = f"team-{i % 7}"
        name = f"{kind.replace('_', '-')}-{i}"
        if kind == "tag_not_found":
            image = f"{private}/shop/svc{i}:9.9.9"
            out.append(Workload(ns, name, image, replicas, not_found_error(image)))
        elif kind == "auth":
            image = f"{private}/secure/svc{i}:1.0"
            out.append(Workload(ns, name, image, replicas, status_error(image, private, "401 Unauthorized")))
        elif kind == "secret_missing":
            image = f"{private}/secure/svc{i}:1.0"
            error = status_error(image, private, "401 Unauthorized")
            out.append(Workload(ns, name, image, replicas, error, ("regcred",), event_reason_secret=True))
        elif kind == "rate_limited":
            image = f"{hub}/library/svc{i}:1.0"
            out.append(Workload(ns, name, image, replicas, status_error(image, hub, "429 Too Many Requests")))
        else:
            image = f"{DNS_HOST}/platform/svc{i}:3.1"
            out.append(Workload(ns, name, image, replicas, dns_error(image, DNS_HOST)))
    return out


@contextlib.asynccontextmanager
async def registries(count: int, workloads: int) -> AsyncIterator[list[str]]:
    """`count` SimRegistries (at least 2): the first private, the last rate-limiting like Docker Hub."""
    sims = [SimRegistry() for _ in range(max(2, count))]
    hosts = [await s.start() for s in sims]
    try:
        private, hub = sims[0], sims[-1]
        for i in range(workloads):
            private.add_image(f"shop/svc{i}", "1.0.0")
            private.add_image(f"secure/svc{i}", "1.0")
            hub.add_image(f"library/svc{i}", "1.0")
        private.require_auth("secure/*", "ci-bot", "bench-password-not-real")
        hub.set_fault("rate_limit")
        hub.ratelimit = (100, 0)
        yield hosts
    finally:
        for s in sims:
            await s.stop()


async def storm(pods: int, workloads: int, registry_count: int, ramp_s: float, quiet_s: float) -> dict[str, Any]:
    """Run the storm and return its JSON figures."""
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        workdir = Path(tmp)
        async with registries(registry_count, workloads) as hosts, sim_world(workdir) as (cluster, fake, kubeconfig):
            settings = bench_settings(workdir, kubeconfig, fake.url, hosts)
            kubelet = BenchKubelet(cluster)
            wanted = plan(workloads, pods, hosts)
            for w in wanted:
                kubelet.namespace(w.namespace)
            async with running_bot(settings) as runner:
                bot = runner.bot
                started = time.monotonic()
                for w in wanted:
                    kubelet.start(w)
                    await asyncio.sleep(ramp_s / len(wanted))
                await asyncio.sleep(1.0)
                flipped = kubelet.back_off(wanted)
                log.info("storm started: %d pods, %d flipped to ImagePullBackOff", pods, flipped)
                quiet = quiet_s if quiet_s > 0 else settings.incidents.update_interval_s + 3.0
                quiet = max(quiet, settings.incidents.storm_window_s + 1.0)  # held registry failures are released
                await _settle(bot, fake, quiet, deadline=started + 110)
                incidents = await bot.store.recent_incidents(limit=100_000, cluster=settings.kube.cluster_name)
                replies = [first_reply_at(fake.calls, i.key) for i in incidents]
                posted = [r for r in replies if r is not None]
                parents = parents_by_incident(fake.calls)
                methods: dict[str, int] = {}
                for call in fake.calls:
                    methods[call.method] = methods.get(call.method, 0) + 1
                return {
                    "pods": pods,
                    "workloads": workloads,
                    "incidents": len(incidents),
                    "slack_calls": len(fake.calls),
                    "seconds_to_all_posted": round(max(posted) - started, 2)
                    if len(posted) == len(incidents) and posted
                    else None,
                    "duplicates": sum(n - 1 for n in parents.values() if n > 1),
                    "unposted": sum(1 for i in incidents if i.key not in parents),
                    "calls_by_method": methods,
                    "slack_429_by_tier": dict(fake.throttled),  # Slack's Tier limits, modelled by the fake
                    "causes": sorted({i.cause.value for i in incidents}),
                    "failures_seen": bot.pipeline.stats.failures_seen,
                    "diagnoses": bot.pipeline.stats.diagnoses,
                    "changes_saved": bot.pipeline.stats.changes_saved,
                }
    raise AssertionError("unreachable")


async def _settle(bot: Bot, fake: FakeSlackApi, quiet_s: float, deadline: float) -> None:
    """Wait until no outbox row is pending and the fake Slack saw no call for `quiet_s` seconds."""
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if len(fake.calls) != last_count:
            last_count, last_change = len(fake.calls), time.monotonic()
            continue
        counts = await bot.store.outbox_counts()
        if counts.get("pending", 0) == 0 and time.monotonic() - last_change >= quiet_s:
            return
    log.warning("storm did not settle before the deadline")


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.storm")
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=20)
    parser.add_argument("--registries", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the workloads start failing")
    parser.add_argument(
        "--quiet", type=float, default=0.0, help="Slack silence that ends the run (0: update interval + 3 s)"
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    result = asyncio.run(storm(args.pods, max(1, args.workloads), args.registries, args.ramp, args.quiet))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
