"""Resident memory of the bot: `python -m bench.memory --pods N [--failing-fraction 0.05]`; last stdout line is JSON.

The simulated cluster, registry and fake Slack run in a child process (testkit.simserver), so this process holds only
the bot. The database is migrated by a child process first (as the Helm chart's migration Job does), so the bot
finds it at head and does not import Alembic. `rss_baseline_mb` is this process's VmRSS once the bot is built
(imports, database, clients) and before it watches; `rss_mb` is the largest VmRSS seen after the watcher synced and
through a steady period in which the bot diagnoses and posts the failing workloads. `--tracemalloc` adds the top
allocation sites to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.composition import Bot
from testkit.inprocess import running_bot
from testkit.world import bench_settings, migrate_in_child, rss_mb, setup_logging

log = logging.getLogger("bench.memory")


@contextlib.contextmanager
def simserver(
    pods: int, failing_fraction: float, per_workload: int, workdir: Path, timeout_s: float = 90.0
) -> Iterator[dict[str, Any]]:
    """Run testkit.simserver in a child process; yield the JSON it printed; stop it by closing its stdin."""
    command = [sys.executable, "-m", "testkit.simserver", "--pods", str(pods), "--per-workload", str(per_workload)]
    command += ["--failing-fraction", str(failing_fraction), "--workdir", str(workdir)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"testkit.simserver exited with {child.wait(timeout=timeout_s)} before it was ready")
        yield json.loads(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def measure(info: dict[str, Any], workdir: Path, steady_s: float, trace: bool) -> dict[str, Any]:
    """Build and run the bot against the child's world; return the JSON figures."""
    settings = bench_settings(workdir, Path(info["kubeconfig"]), str(info["slack"]), [str(info["registry"])])
    await migrate_in_child(settings.database_url)
    built = await Bot.create(settings)
    baseline = rss_mb()
    if trace:
        tracemalloc.start(10)
    started = time.monotonic()
    peak = baseline
    async with running_bot(settings, bot=built, timeout_s=120) as runner:
        bot = runner.bot
        synced_s = time.monotonic() - started
        peak = max(peak, rss_mb())
        log.info("synced in %.2fs, RSS %.1f MB", synced_s, peak)
        end = time.monotonic() + steady_s
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
            peak = max(peak, rss_mb())
        if trace:
            _report_tracemalloc()
        failing_seen = bot.watcher.failing_pods if bot.watcher is not None else 0
        incidents = len(bot.book.open_incidents())
    return {
        "pods": info["pods"],
        "failing": info["failing"],
        "rss_mb": round(peak, 1),
        "rss_baseline_mb": round(baseline, 1),
        "seconds_to_sync": round(synced_s, 2),
        "failing_seen": failing_seen,
        "open_incidents": incidents,
    }


def _report_tracemalloc(limit: int = 25) -> None:
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"tracemalloc: {total / 2**20:.1f} MiB traced; top {limit} lines:", file=sys.stderr)
    for stat in stats[:limit]:
        print(f"  {stat.size / 2**20:7.2f} MiB {stat.count:8d} blocks  {stat.traceback[0]}", file=sys.stderr)


def main() -> None:
    """Parse arguments, start the simulator process, measure the bot, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--failing-fraction", type=float, default=0.05)
    parser.add_argument("--per-workload", type=int, default=50, help="pods per Deployment")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds to keep measuring after the sync")
    parser.add_argument("--tracemalloc", action="store_true", help="print the top allocation sites to stderr")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    setup_logging(args.log_level)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        with simserver(args.pods, args.failing_fraction, args.per_workload, workdir) as info:
            result = asyncio.run(measure(info, workdir, args.steady, args.tracemalloc))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
