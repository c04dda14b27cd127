"""The bot in its own process, for chaos tests: `python -m testkit.process SETTINGS_JSON`.

It runs `bot.runtime.run_bot`, exactly what `imagepull-doctor run` runs, until SIGTERM/SIGINT (or SIGKILL, which is
the point). Settings come as JSON on the command line (a test builds them with `settings_dict`); secrets are passed
as plain strings there, which is fine for loopback fakes and never for real ones. The process prints `ready` on
stdout once every task has started.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from bot.logging_setup import configure_logging
from bot.runtime import run_bot
from bot.settings import Settings

# Timings that make a test world move quickly: short claim leases, no per-channel pacing, fast executor.
FAST_TIMINGS: dict[str, Any] = {
    "outbox": {"lease_s": 2.0, "rate_per_channel": None, "poll_interval_s": 0.1},
    "executor": {"interval_s": 0.2, "settle_s": 0.0},
    "incidents": {"storm_window_s": 0.5, "update_interval_s": 0.5, "resolve_grace_s": 1.0, "tick_interval_s": 0.2},
}


CHAOS_CHANNEL = "#imagepull-chaos"


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
        "metrics_port": 0,
        "slack": {"bot_token": bot_token, "base_url": slack_url, "default_channel": CHAOS_CHANNEL},
        "kube": {"kubeconfig": str(kubeconfig), "cluster_name": cluster_name, "exclude_namespaces": ["kube-system"]},
        "registry": {
            "insecure_registries": insecure_registries,
            "probe_budget_s": 2.0,
            "allow_networks": ["127.0.0.0/8", "::1/128"],
        },
        "ha": {"lease_namespace": "default", "lease_duration_s": 4.0, "renew_s": 0.5, "identity": identity},
        **json.loads(json.dumps(FAST_TIMINGS)),
    }


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_bot(settings, stop=stop, on_ready=lambda _: print("ready", flush=True))


def main(argv: list[str]) -> int:
    """Entry point: argv[0] is the settings JSON."""
    if len(argv) != 1:
        print("usage: python -m testkit.process SETTINGS_JSON", file=sys.stderr)
        return 2
    settings = Settings.model_validate(json.loads(argv[0]))
    configure_logging(settings.log_level)
    return asyncio.run(_serve(settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
