"""The test kit's commands of the `imagepull-doctor` CLI (entry point group `imagepull_doctor.commands`).

- `demo`: the self-contained demo (simulated cluster, registries and Slack; the real bot); exits by itself.
- `sim --objects FILE.json --kubeconfig OUT`: a simulated API server holding the objects of FILE (a `List`, or what
  `kubectl get ... -o json` prints), a kubeconfig for it written to OUT, one JSON line with its URL once ready; it
  serves until SIGTERM/SIGINT or until its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from bot.settings import Settings
from testkit.demo import run_demo
from testkit.kube.apiserver import SimCluster


class DemoCommand:
    name = "demo"
    help = "run the whole bot against a built-in simulated cluster, registries and Slack, then exit"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seconds", type=float, default=45.0, help="give up after this long (default 45)")
        parser.add_argument("--workdir", default=".demo", help="where the demo keeps its SQLite file and kubeconfig")

    async def run(self, args: argparse.Namespace, settings: Settings) -> int:
        return await run_demo(settings, seconds=args.seconds, workdir=args.workdir)


class SimCommand:
    name = "sim"
    help = "serve a simulated Kubernetes API server holding the objects of a JSON file, until stopped"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--objects", required=True, type=Path, help="a List, or `kubectl get ... -o json` output")
        parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write a kubeconfig for it")

    async def run(self, args: argparse.Namespace, settings: Settings) -> int:
        try:
            objects = load_objects(args.objects)
        except (OSError, ValueError) as exc:
            print(f"imagepull-doctor sim: --objects {args.objects}: {exc}", file=sys.stderr)
            return 2
        cluster = SimCluster()
        url = await cluster.start()
        try:
            for obj in objects:
                cluster.put(obj)
            cluster.write_kubeconfig(args.kubeconfig)
            print(json.dumps({"url": url, "kubeconfig": str(args.kubeconfig), "objects": len(objects)}), flush=True)
            await _until_stopped()
        finally:
            await cluster.stop()
        return 0


def load_objects(path: Path) -> list[dict[str, Any]]:
    """The API objects of a file: a `List` (`items`), a single object, or a JSON array; each needs kind and name."""
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data.get("items") if isinstance(data, dict) and "items" in data else data
    items = items if isinstance(items, list) else [items]
    objects: list[dict[str, Any]] = []
    for i, obj in enumerate(items):
        if not isinstance(obj, dict) or not obj.get("kind") or not (obj.get("metadata") or {}).get("name"):
            raise ValueError(f"item {i} is not an API object with kind and metadata.name")
        objects.append(obj)
    return objects


async def _until_stopped() -> None:
    """Wait for SIGTERM/SIGINT, or for standard input to close (the parent went away)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)

    if sys.stdin is not None and not sys.stdin.closed and not sys.stdin.isatty():
        loop.run_in_executor(None, watch_stdin)
    await stop.wait()


demo_command = DemoCommand()
sim_command = SimCommand()
