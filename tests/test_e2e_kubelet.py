"""End to end (the real bot on the simulated world): kubelet >= 1.32 back-off retries cost no new diagnosis
(issue 13 point 2) and a restart re-pull of an untagged image opens an incident (point 1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.composition import Bot
from bot.model import Cause
from testkit.kube import objects as k8s
from tests.e2e_world import World, bot_settings, incident_of, not_found, running, settled, until, world_for


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with world_for(tmp_path / "world") as w:
        yield w


async def test_132_backoff_retries_cost_no_new_diagnosis(world: World, tmp_path: Path) -> None:
    """Pods alternate ErrImagePull and the 1.32 back-off that carries the same error (image_manager.go,
    kubernetes#127918): the pipeline sees each pod's failure once and diagnoses the workload once."""
    api = f"{world.host}/shop/api:v1.5.0"
    error = not_found(api)
    world.kubelet.workload("shop", "api", api, error, replicas=2)
    async with running(bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")) as bot:
        await until(lambda: _incident(bot, "api"), what="api incident")
        await until(lambda: settled(bot), what="outbox drained")
        seen, diagnoses = bot.pipeline.stats.failures_seen, bot.pipeline.stats.diagnoses
        for _ in range(3):
            for pod_name in world.kubelet.pods[("shop", "api")]:
                pod = world.cluster.get("Pod", "shop", pod_name)
                assert pod is not None
                backoff = f'Back-off pulling image "{api}": ErrImagePull: {error}'
                pod = world.cluster.put(k8s.set_waiting(pod, "api", "ImagePullBackOff", backoff))
                world.cluster.put(k8s.set_waiting(pod, "api", "ErrImagePull", error))
        await asyncio.sleep(1.5)  # every change has been watched and handed on by now
        assert (bot.pipeline.stats.failures_seen, bot.pipeline.stats.diagnoses) == (seen, diagnoses)
        inc = await incident_of(bot, "api")
        assert inc is not None and inc.cause is Cause.TAG_NOT_FOUND


async def test_restart_repull_of_untagged_image_opens_an_incident(world: World, tmp_path: Path) -> None:
    """A pod of `hub/app` (no tag) ran before; on restart the re-pull is rate limited. kubelet shows the runtime's
    name in status.image (kubelet_pods.go): the bot still opens the incident for `hub/app`."""
    image = f"{world.hub_host}/team/app"
    world.kubelet.workload("shop", "app", image, "placeholder")
    [pod_name] = world.kubelet.pods[("shop", "app")]
    pod = world.cluster.get("Pod", "shop", pod_name)
    assert pod is not None
    # Docker Hub's text through Docker, verbatim from docker/hub-feedback#2429 (tests/corpus/public.jsonl).
    limited = (
        "Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the"
        " limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
    )
    pod = k8s.set_waiting(pod, "app", "ErrImagePull", limited)
    status = pod["status"]["containerStatuses"][0]
    status.update({"image": f"{image}:latest", "containerID": "containerd://" + "cd" * 32, "restartCount": 2})
    world.cluster.put(pod)
    async with running(bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")) as bot:
        await until(lambda: _incident(bot, "app"), what="app incident")
        inc = await incident_of(bot, "app")
        assert inc is not None and inc.image == image


async def _incident(bot: Bot, workload: str) -> bool:
    return await incident_of(bot, workload) is not None
