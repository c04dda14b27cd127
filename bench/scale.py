"""A cluster at Kubernetes' tested limits, then a storm: `python -m bench.scale --pods 150000 --failing 20000`.

The simulated cluster, its two registries and the fake Slack run in a child process (`testkit.simserver --storm`); the
bot runs in this one, in production settings (SQLite in a temporary directory, or `--database-url`), on a database a
child process migrated first (as the Helm chart's migration Job does). Steps:

1. `rss_baseline_mb`: this process's VmRSS once the bot is built (imports, database, clients), before it watches;
2. `seconds_to_sync`: from starting the bot (Lease taken, lists paged, observations delivered) to its watcher synced;
3. the storm: `--failing` pods of workloads of `--per-failing-workload` pods, which ran until now, fail within
   `--ramp` seconds with kubelet's Failed events (every other workload's registry answers 503, the others' tags are
   gone); the run ends once the outbox is empty and the fake Slack has been quiet for longer than the parent-update
   interval;
4. optionally (`--failover`) a second bot with the same database takes over the Lease: `seconds_takeover_to_watching`
   is from its start to its watcher synced, `failover_diagnoses` and `failover_registry_probes` what it verified
   again, and whatever it posts again counts in `duplicates`.

Last stdout line, one JSON object: `pods`, `failing`, `seconds_to_sync`, `rss_mb` (the largest VmRSS from the start of
the watch to the end of the storm; `rss_failover_mb` then covers the follower, which runs in this same process),
`rss_baseline_mb`, `incidents` (stored for the cluster), `slack_calls` (every Web API call the fake Slack recorded),
`duplicates` (top-level posts beyond the first per incident key, from the fake's record), `diagnoses` (the
pipeline's full diagnoses), `registry_probes` (probes the prober sent to a registry, neither cached nor joined),
`db_writes` (INSERT/UPDATE/DELETE statements executed on the bot's engine), `seconds_to_all_posted` (from the first
failing pod to the last incident's diagnosis reply; null if one was never posted), and more:
`distinct_failing_keys` (distinct failing (image, credentials, platform)), `seconds_pacing_floor` (top-level and
thread posts over the channel pace: no bot posts them faster), `registry_requests` (as the registries counted them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bot.composition import Bot
from bot.settings import Settings
from testkit.inprocess import running_bot
from testkit.world import bench_settings, migrate_in_child, rss_mb, setup_logging

log = logging.getLogger("bench.scale")


class Simulator:
    """testkit.simserver in a child process, spoken to with one line each way."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self._child = child
        self.info: dict[str, Any] = {}

    async def ask(self, command: str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Send one command line; return the JSON line answered."""
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(command.encode() + b"\n")
        await self._child.stdin.drain()
        line = await asyncio.wait_for(self._child.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"testkit.simserver ended while answering {command!r}")
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextlib.asynccontextmanager
async def simulator(args: argparse.Namespace, workdir: Path, *extra: str) -> AsyncIterator[Simulator]:
    """Start the child, read its ready line; stop it by closing its stdin."""
    command = [sys.executable, "-m", "testkit.simserver", "--pods", str(args.pods), "--failing-fraction", "0"]
    command += ["--per-workload", str(args.per_workload), "--storm", str(args.failing)]
    command += ["--storm-per-workload", str(args.per_failing_workload), "--workdir", str(workdir), *extra]
    child = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26
    )
    sim = Simulator(child)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), args.populate_timeout)
        if not line:
            raise RuntimeError(f"testkit.simserver exited with {await child.wait()} before it was ready")
        sim.info = json.loads(line)
        log.info("simulator ready: %s", sim.info)
        yield sim
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 20)
        except TimeoutError:
            child.kill()
            await child.wait()


class RssPeak:
    """The largest VmRSS seen, sampled every half second while running."""

    def __init__(self) -> None:
        self.peak = rss_mb()

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.peak = max(self.peak, rss_mb())
            await asyncio.sleep(0.5)


def count_writes(bot: Bot, counter: dict[str, int]) -> None:
    """Count every INSERT, UPDATE and DELETE statement the bot's engine executes (an executemany counts once)."""

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb in ("INSERT", "UPDATE", "DELETE"):
            counter[verb] = counter.get(verb, 0) + 1

    event.listen(bot.store.engine.sync_engine, "before_cursor_execute", before)


async def settle(bot: Bot, sim: Simulator, quiet_s: float, deadline: float) -> None:
    """Wait until no outbox row is pending and the fake Slack saw no call for `quiet_s` seconds."""
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        count = int((await sim.ask("calls"))["slack_calls"])
        if count != last_count:
            last_count, last_change = count, time.monotonic()
            continue
        counts = await bot.store.outbox_counts()
        if counts.get("pending", 0) == 0 and time.monotonic() - last_change >= quiet_s:
            return
    log.warning("the storm did not settle before the deadline")


async def failover(settings: Settings, sim: Simulator, first: Any) -> dict[str, Any]:
    """Stop the first bot (its Lease is released) and start a second replica on the same database: seconds from its
    start to its watcher synced, and the diagnoses and probes it made (what it re-posts counts in `duplicates`)."""
    await first.stop()
    second = Settings.model_validate({**settings.model_dump(), "ha": {"identity": "bench-scale-follower"}})
    started = time.monotonic()
    async with running_bot(second, timeout_s=300) as runner:
        took = time.monotonic() - started
        log.info("follower watching %.2fs after it started", took)
        await settle(runner.bot, sim, quiet_s=5.0, deadline=time.monotonic() + 60)
        return {
            "seconds_takeover_to_watching": round(took, 2),
            "failover_diagnoses": runner.bot.pipeline.stats.diagnoses,
            "failover_registry_probes": runner.bot.prober.probes_made,
        }


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run the whole bench; return the JSON figures."""
    async with simulator(args, workdir) as sim:
        info = sim.info
        settings = bench_settings(workdir, Path(info["kubeconfig"]), str(info["slack"]), list(info["registries"]))
        if args.database_url:
            settings = Settings.model_validate({**settings.model_dump(), "database_url": args.database_url})
        await migrate_in_child(settings.database_url)
        built = await Bot.create(settings)
        baseline = rss_mb()
        writes: dict[str, int] = {}
        count_writes(built, writes)
        rss = RssPeak()
        sampler = asyncio.create_task(rss.run())
        started = time.monotonic()
        takeover: dict[str, Any] = {}
        try:
            runner_cm = running_bot(settings, bot=built, timeout_s=args.sync_timeout)
            runner = await runner_cm.__aenter__()
            try:
                synced_s = time.monotonic() - started
                log.info("synced %d pods in %.2fs, RSS %.1f MB", info["pods"], synced_s, rss_mb())
                bot = runner.bot
                storm = await sim.ask(f"storm {args.ramp}")
                log.info("storm: %s", storm)
                quiet = max(settings.incidents.update_interval_s + 3.0, settings.incidents.storm_window_s + 1.0)
                await settle(bot, sim, quiet, deadline=time.monotonic() + args.settle_timeout)
                incidents = await bot.store.recent_incidents(limit=1_000_000, cluster=settings.kube.cluster_name)
                diagnoses = bot.pipeline.stats.diagnoses
                probes = bot.prober.probes_made
                failures_seen = bot.pipeline.stats.failures_seen
                one_bot_peak = rss.peak
                if args.failover:
                    takeover = await failover(settings, sim, runner)
            finally:
                await runner_cm.__aexit__(None, None, None)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        stats = await sim.ask("stats")
    parents: dict[str, int] = stats["parents"]
    replies: dict[str, float | None] = stats["first_reply_at"]
    posted = [replies.get(i.key) for i in incidents]
    all_posted = bool(posted) and all(p is not None for p in posted)
    posts = int(stats["calls_by_method"].get("chat.postMessage", 0))
    rate = settings.outbox.rate_per_channel or 0.0
    result: dict[str, Any] = {
        "pods": info["pods"],
        "failing": storm["storm_flipped"],
        "seconds_to_sync": round(synced_s, 2),
        "rss_mb": round(one_bot_peak, 1),
        "rss_baseline_mb": round(baseline, 1),
        "incidents": len(incidents),
        "slack_calls": stats["slack_calls"],
        "duplicates": sum(n - 1 for n in parents.values() if n > 1),
        "diagnoses": diagnoses,
        "registry_probes": probes,
        "db_writes": sum(writes.values()),
        "seconds_to_all_posted": round(max(p for p in posted if p is not None) - storm["storm_started"], 2)
        if all_posted
        else None,
        "seconds_pacing_floor": round(posts / rate, 1) if rate else 0.0,
        "seconds_ramp": round(storm["storm_done"] - storm["storm_started"], 2),
        "distinct_failing_keys": info["distinct_failing_keys"],
        "failing_workloads": info["storm_workloads"],
        "failures_seen": failures_seen,
        "registry_requests": stats["registry_requests"],
        "db_writes_by_verb": writes,
        "calls_by_method": stats["calls_by_method"],
        "slack_429_by_tier": stats["slack_429_by_tier"],
        "unposted": sum(1 for p in posted if p is None),
    }
    if takeover:
        # The follower runs in this process after the first bot stopped: what the first left in the heap counts too.
        result["rss_failover_mb"] = round(rss.peak, 1)
    result.update(takeover)
    return result


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--failing", type=int, default=20_000, help="pods that fail in the storm")
    parser.add_argument("--per-workload", type=int, default=50, help="pods per healthy Deployment")
    parser.add_argument("--per-failing-workload", type=int, default=500, help="pods per failing Deployment")
    parser.add_argument("--ramp", type=float, default=30.0, help="seconds over which the storm's pods fail")
    parser.add_argument("--failover", action="store_true", help="then measure a second replica's takeover")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary directory")
    parser.add_argument("--populate-timeout", type=float, default=900.0)
    parser.add_argument("--sync-timeout", type=float, default=300.0)
    parser.add_argument("--settle-timeout", type=float, default=600.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
