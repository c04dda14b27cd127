"""The observation queue between the watcher and the pipeline: order per pod, coalescing, bounded concurrency."""

from __future__ import annotations

import asyncio
import contextlib

from bot.kube.observations import ObservationQueue
from bot.model import PullFailure, Recovery, WorkloadRef

W = WorkloadRef("Deployment", "web")


def failure(pod: str, message: str, container: str = "app") -> PullFailure:
    return PullFailure("c", "ns", pod, f"uid-{pod}", container, "container", "nginx:1.99", "ErrImagePull", message, W)


def recovery(pod: str) -> Recovery:
    return Recovery("c", "ns", pod, f"uid-{pod}", "app", "nginx:1.99", W, "started")


async def test_order_per_pod_and_coalescing_keep_recoveries_after_failures() -> None:
    seen: list[str] = []
    gate = asyncio.Event()

    async def on_failure(f: PullFailure) -> None:
        if f.pod == "busy":
            await gate.wait()
        seen.append(f"F {f.pod} {f.message}")

    async def on_recovery(r: Recovery) -> None:
        seen.append(f"R {r.pod}")

    q = ObservationQueue(on_failure, on_recovery, workers=2)
    runner = asyncio.create_task(q.run())
    try:
        q.put(failure("busy", "first"))
        await asyncio.sleep(0.01)  # "busy" is being delivered
        q.put(failure("busy", "second"))
        q.put(failure("busy", "third"))  # replaces "second", which has not started
        q.put(recovery("busy"))
        q.put(failure("other", "x"))
        await asyncio.sleep(0.01)
        assert seen == ["F other x"]  # another pod is not held up
        gate.set()
        await asyncio.wait_for(q.join(), 2)
        assert seen == ["F other x", "F busy first", "F busy third", "R busy"]
        assert q.coalesced == 1 and q.pending == 0 and q.delivered == 4
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_a_failing_consumer_is_logged_and_delivery_goes_on() -> None:
    seen: list[str] = []

    async def on_failure(f: PullFailure) -> None:
        if f.message == "boom":
            raise RuntimeError("consumer bug")
        seen.append(f.message)

    async def on_recovery(r: Recovery) -> None:
        seen.append("recovered")

    q = ObservationQueue(on_failure, on_recovery, workers=1)
    runner = asyncio.create_task(q.run())
    try:
        q.put(failure("a", "boom"))
        q.put(failure("b", "fine"))
        q.put(recovery("a"))
        await asyncio.wait_for(q.join(), 2)
        assert sorted(seen) == ["fine", "recovered"]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
