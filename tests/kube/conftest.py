"""Fixtures for the Kubernetes tests: a started simulated API server and a real kubernetes_asyncio client for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from bot.kube.client import load_api_client
from bot.settings import KubeSettings
from testkit.kube.apiserver import SimCluster


@pytest.fixture
async def sim() -> AsyncIterator[SimCluster]:
    """A running simulated cluster with fast bookmarks."""
    cluster = SimCluster(bookmark_interval_s=0.2)
    await cluster.start()
    yield cluster
    await cluster.stop()


@pytest.fixture
def kube_settings(sim: SimCluster, tmp_path: Path) -> KubeSettings:
    """Settings pointing at the simulator through a written kubeconfig."""
    return KubeSettings(kubeconfig=sim.write_kubeconfig(tmp_path / "kubeconfig"), context="sim", exclude_namespaces=[])


@pytest.fixture
async def api(kube_settings: KubeSettings) -> AsyncIterator[k8s.ApiClient]:
    """A real ApiClient talking HTTP to the simulator."""
    api_client = await load_api_client(kube_settings)
    async with api_client:
        yield api_client


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait until `check()` is truthy (polling), or fail with the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(0.02)
