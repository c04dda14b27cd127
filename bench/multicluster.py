"""Many clusters, one database: `python -m bench.multicluster --bots 10 [--pods 10000 --failing 4000]`; last stdout
line is JSON.

`--bots` bots (one per cluster name, each with its own Lease and Slack channel) run in this process on one
PostgreSQL database (a fresh one on 127.0.0.1:5432, or `--database-url`), all watching the simulated cluster of a
child process (`testkit.simserver --storm`), so a storm of `--failing` pods is a storm in every "cluster" at once.
While they sync, weather the storm and post, a separate connection samples the server: `pg_connections_peak`
(connections to the database), `pg_lock_waits_peak` (lock requests not granted), and at the end `pg_deadlocks` and
`updates_by_table` (row updates per table from pg_stat_user_tables: a table many bots update in one row would be a
hot row). With `incidents`, `slack_calls`, `duplicates` (from the fake Slack's record), `diagnoses`,
`registry_probes` and `db_writes` summed over the bots, and `seconds_to_all_posted` from the storm's first pod.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.scale import RssPeak, count_writes, settle, simulator
from bot.composition import Bot
from bot.settings import Settings
from testkit.inprocess import BotInProcess
from testkit.world import CHANNEL, bench_settings, migrate_in_child, rss_mb, setup_logging

log = logging.getLogger("bench.multicluster")
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[str]:
    """`url`, or a fresh PostgreSQL database dropped at the end."""
    if url:
        yield url
        return
    name = f"ipd_bench_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class ServerSampler:
    """Samples the PostgreSQL server for one database every 0.2 s through its own connection."""

    def __init__(self, dsn: str, database_name: str) -> None:
        self._dsn = dsn
        self._name = database_name
        self.connections_peak = 0
        self.lock_waits_peak = 0

    async def run(self) -> None:
        """Sample until cancelled."""
        conn = await asyncpg.connect(self._dsn)
        try:
            while True:
                connections = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self._name
                )
                waits = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE NOT l.granted AND a.datname = $1",
                    self._name,
                )
                self.connections_peak = max(self.connections_peak, int(connections))
                self.lock_waits_peak = max(self.lock_waits_peak, int(waits))
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    async def totals(self) -> dict[str, Any]:
        """Deadlocks and row updates per table since the database was created."""
        conn = await asyncpg.connect(self._dsn)
        try:
            deadlocks = await conn.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = $1", self._name)
            rows = await conn.fetch("SELECT relname, n_tup_upd, n_tup_ins FROM pg_stat_user_tables ORDER BY relname")
        finally:
            await conn.close()
        return {
            "pg_deadlocks": int(deadlocks or 0),
            "updates_by_table": {r["relname"]: int(r["n_tup_upd"]) for r in rows if r["n_tup_upd"]},
            "inserts_by_table": {r["relname"]: int(r["n_tup_ins"]) for r in rows if r["n_tup_ins"]},
        }


def bot_settings(base: Settings, url: str, i: int) -> Settings:
    """Bot `i`: its own cluster name (Lease, incident keys), channel and identity, the shared database."""
    data = base.model_dump()
    data["database_url"] = url
    data["kube"]["cluster_name"] = f"bench-{i}"
    data["slack"]["default_channel"] = f"{CHANNEL}-{i}"
    data["ha"]["identity"] = f"bench-multicluster-{i}"
    return Settings.model_validate(data)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run the bench; return the JSON figures."""
    async with (
        database(args.database_url) as url,
        simulator(args, workdir, "--channels", str(args.bots)) as sim,
    ):
        info = sim.info
        base = bench_settings(workdir, Path(info["kubeconfig"]), str(info["slack"]), list(info["registries"]))
        await migrate_in_child(url)
        name = url.rsplit("/", 1)[1]
        sampler = ServerSampler(ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}", name)
        sampling = asyncio.create_task(sampler.run())
        rss = RssPeak()
        rss_task = asyncio.create_task(rss.run())
        writes: dict[str, int] = {}
        runners: list[BotInProcess] = []
        try:
            started = time.monotonic()
            for i in range(args.bots):
                settings = bot_settings(base, url, i)
                built = await Bot.create(settings)
                count_writes(built, writes)
                runner = BotInProcess(settings, bot=built)
                runners.append(runner)
            await asyncio.gather(*(r.start(wait_synced=True, timeout_s=args.sync_timeout) for r in runners))
            synced_s = time.monotonic() - started
            log.info("%d bots synced in %.2fs, RSS %.1f MB", args.bots, synced_s, rss_mb())
            storm = await sim.ask(f"storm {args.ramp}")
            quiet = max(base.incidents.update_interval_s + 3.0, base.incidents.storm_window_s + 1.0)
            await settle(runners[0].bot, sim, quiet, deadline=time.monotonic() + args.settle_timeout)
            incidents = []
            for i, r in enumerate(runners):
                incidents += await r.bot.store.recent_incidents(limit=1_000_000, cluster=f"bench-{i}")
            diagnoses = sum(r.bot.pipeline.stats.diagnoses for r in runners)
            probes = sum(r.bot.prober.probes_made for r in runners)
        finally:
            for r in runners:
                await r.stop()
            for task in (sampling, rss_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        totals = await sampler.totals()
        stats = await sim.ask("stats")
    parents: dict[str, int] = stats["parents"]
    replies: dict[str, float | None] = stats["first_reply_at"]
    posted = [replies.get(i.key) for i in incidents]
    all_posted = bool(posted) and all(p is not None for p in posted)
    return {
        "bots": args.bots,
        "pods": info["pods"],
        "failing": storm["storm_flipped"],
        "seconds_to_sync": round(synced_s, 2),
        "incidents": len(incidents),
        "slack_calls": stats["slack_calls"],
        "duplicates": sum(n - 1 for n in parents.values() if n > 1),
        "unposted": sum(1 for p in posted if p is None),
        "diagnoses": diagnoses,
        "registry_probes": probes,
        "db_writes": sum(writes.values()),
        "db_writes_by_verb": writes,
        "seconds_to_all_posted": round(max(p for p in posted if p is not None) - storm["storm_started"], 2)
        if all_posted
        else None,
        "slack_429_by_tier": stats["slack_429_by_tier"],
        "calls_by_method": stats["calls_by_method"],
        "pg_connections_peak": sampler.connections_peak,
        "pg_lock_waits_peak": sampler.lock_waits_peak,
        **totals,
        "rss_mb": round(rss.peak, 1),
    }


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.multicluster")
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--failing", type=int, default=4000, help="pods that fail in the storm (in every cluster)")
    parser.add_argument("--per-workload", type=int, default=50)
    parser.add_argument("--per-failing-workload", type=int, default=250)
    parser.add_argument("--ramp", type=float, default=20.0)
    parser.add_argument("--database-url", default="", help="default: a fresh database on 127.0.0.1:5432")
    parser.add_argument("--populate-timeout", type=float, default=600.0)
    parser.add_argument("--sync-timeout", type=float, default=300.0)
    parser.add_argument("--settle-timeout", type=float, default=600.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    with tempfile.TemporaryDirectory(prefix="bench-multicluster-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
