"""A bot process for end-to-end and chaos tests: `python -m bot.testing SETTINGS_JSON [OPTIONS_JSON]`.

It runs what `imagepull-doctor run` runs minus the Slack app (no slash commands or buttons): Bot.create, the outbox
worker, the leader-elected watcher and the approval executor (bot.flows), until SIGTERM/SIGINT (or SIGKILL, which is
the point). Settings come as JSON
on the command line (a test builds them with `settings_dict`); secrets are passed as plain strings there, which is
fine for loopback fakes and never for real ones. The process prints `ready` on stdout once the bot is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import Bot
from bot.logging_setup import configure_logging
from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class Tuning:
    """Knobs of the outbox worker that tests shorten (a crashed worker's lease, per-channel pacing)."""

    outbox_lease_s: float = 60.0
    rate_per_channel: float | None = 1.0
    poll_interval_s: float = 0.2
    executor: bool = True
    executor_interval_s: float = 2.0
    stale_run_s: float = 600.0  # an interrupted action is marked failed after this long
    settle_s: float = 5.0  # wait after a fix before the follow-up diagnosis


def settings_dict(
    *,
    database_url: str,
    kubeconfig: Path,
    cluster_name: str,
    slack_url: str,
    bot_token: str,
    insecure_registries: list[str],
    identity: str,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """The bot's settings for a test world as plain JSON-able data, with fast timings."""
    return {
        "database_url": database_url,
        "log_level": log_level,
        "slack": {"bot_token": bot_token, "base_url": slack_url, "default_channel": "#imagepull-chaos"},
        "kube": {"kubeconfig": str(kubeconfig), "cluster_name": cluster_name, "exclude_namespaces": ["kube-system"]},
        "registry": {"insecure_registries": insecure_registries, "probe_budget_s": 2.0},
        "incidents": {"storm_window_s": 0.5, "update_interval_s": 0.5, "resolve_grace_s": 1.0},
        "ha": {"lease_namespace": "default", "lease_duration_s": 4.0, "renew_s": 0.5, "identity": identity},
    }


def tune(bot: Bot, tuning: Tuning) -> None:
    """Apply test timings to a built bot's outbox worker."""
    bot.outbox.lease_s = tuning.outbox_lease_s
    bot.outbox.pacer.rate = tuning.rate_per_channel
    bot.outbox.poll_interval = tuning.poll_interval_s


async def run_bot(settings: Settings, tuning: Tuning) -> int:
    """Build the bot and run its outbox worker and leader-elected duties until SIGTERM/SIGINT."""
    bot = await Bot.create(settings)
    tune(bot, tuning)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(bot.outbox.run()), asyncio.create_task(bot.run_leader_elected())]
    if tuning.executor:
        from bot.flows import Flows

        flows = Flows.from_bot(bot)
        flows.stale_run_s, flows.settle_s = tuning.stale_run_s, tuning.settle_s
        tasks.append(asyncio.create_task(flows.run_executor(tuning.executor_interval_s)))
    print("ready", flush=True)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in [waiter, *tasks]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await bot.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point: argv[0] is the settings JSON, argv[1] (optional) the Tuning JSON."""
    if not argv:
        print("usage: python -m bot.testing SETTINGS_JSON [TUNING_JSON]", file=sys.stderr)
        return 2
    settings = Settings.model_validate(json.loads(argv[0]))
    tuning = Tuning(**json.loads(argv[1])) if len(argv) > 1 else Tuning()
    configure_logging(settings.log_level)
    return asyncio.run(run_bot(settings, tuning))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
