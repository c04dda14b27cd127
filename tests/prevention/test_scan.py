"""The latent-failure scan end to end: a simulated cluster seeded with every kind of latent failure and healthy
workloads, simulated registries, the real kubernetes_asyncio client and the real registry prober."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.kube.client import load_api_client
from bot.prevention.findings import Risk
from bot.prevention.scanner import LatentScanner, ScanSettings
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import RegistryProber
from bot.settings import KubeSettings, RegistrySettings
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.latent import LatentWorld, RegistryHandle, jwt_expiring_in
from testkit.oci.simregistry import SimRegistry

USER, PASSWORD, JWT_USER = "robot", "right-password-7f2", "jwtbot"


def _handle(reg: SimRegistry, host: str, auth: tuple[str, str] | None = None) -> RegistryHandle:
    def push(repo: str, tag: str, platforms: list[str]) -> str:
        if auth is not None:
            reg.require_auth(repo, *auth)
        return reg.add_image(repo, tag, platforms, index=True)

    return RegistryHandle(host, push)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[LatentWorld, SimCluster, list[str]]]:
    cluster = SimCluster()
    await cluster.start()
    regs = [SimRegistry() for _ in range(4)]
    hosts = [await r.start() for r in regs]
    regs[2].ratelimit = (100, 5)
    jwt = jwt_expiring_in(timedelta(minutes=40))
    try:
        world = LatentWorld(
            cluster,
            public=_handle(regs[0], hosts[0]),
            private=_handle(regs[1], hosts[1], (USER, PASSWORD)),
            limited=_handle(regs[2], hosts[2]),
            private_jwt=_handle(regs[3], hosts[3], (JWT_USER, jwt)),
            user=USER,
            password=PASSWORD,
            jwt_user=JWT_USER,
            jwt_password=jwt,
        )
        yield world, cluster, hosts
    finally:
        for r in regs:
            await r.stop()
        await cluster.stop()


async def test_every_seeded_latent_failure_is_found_and_nothing_else(
    world: tuple[LatentWorld, SimCluster, list[str]], tmp_path: Path
) -> None:
    latent, cluster, hosts = world
    latent.build(workloads=60, images=30, seeded_per_kind=1, namespaces=4)
    api = await load_api_client(KubeSettings(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    prober = RegistryProber(
        RegistrySettings(allow_networks=list(LOOPBACK_NETWORKS), insecure_registries=hosts, probe_budget_s=3.0)
    )
    try:
        report = await LatentScanner(api, prober, ScanSettings()).scan()
    finally:
        await prober.close()
        await api.close()
    found = {(f.risk, f.namespace, f.workload) for f in report.findings}
    seeded = {(s.risk, s.namespace, s.workload) for s in latent.seeds}
    assert seeded <= found, f"missed: {sorted(seeded - found)}"
    assert found - seeded == set(), f"false positives: {sorted(found - seeded)}"
    assert report.workloads == 60 and not report.could_not_read
    assert report.checks < report.workloads, "workloads sharing an image and credentials share one probe"
    platform = next(f for f in report.findings if f.risk is Risk.PLATFORM_MISSING)
    assert "linux/arm64" in platform.detail and "kubernetes.io/arch" in platform.fix
    assert all(PASSWORD not in f.detail + f.fix for f in report.findings)


async def test_a_scan_that_cannot_read_says_so(
    world: tuple[LatentWorld, SimCluster, list[str]], tmp_path: Path
) -> None:
    """Lists that fail are reported as not read; the scan still returns what it could check."""
    latent, cluster, hosts = world
    latent.build(workloads=10, images=5, seeded_per_kind=0, namespaces=2)
    cluster.faults.fail_next(1, 500, path_prefix="/apis/apps/v1/statefulsets")
    api = await load_api_client(KubeSettings(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    prober = RegistryProber(
        RegistrySettings(allow_networks=list(LOOPBACK_NETWORKS), insecure_registries=hosts, probe_budget_s=3.0)
    )
    try:
        report = await LatentScanner(api, prober).scan()
    finally:
        await prober.close()
        await api.close()
    assert report.could_not_read == ["could not list StatefulSets (500)"]
    assert report.workloads == 10 and report.findings == []


async def test_a_hanging_registry_is_benched_and_the_scan_finishes(tmp_path: Path) -> None:
    """A registry that accepts connections and never answers: three probes time out, the rest are not sent; every
    workload on it is reported as "could not check", none as a verdict."""
    cluster = SimCluster()
    await cluster.start()
    hang = SimRegistry()
    host = await hang.start()
    try:
        cluster.put(k8s.node("n", arch="amd64"))
        cluster.put(k8s.namespace("shop"))
        cluster.put(k8s.service_account("default", "shop"))
        for i in range(12):
            deploy = k8s.deployment(f"app-{i}", "shop", f"{host}/shop/app-{i}:1.0", 1)
            cluster.put(deploy)
            cluster.put(k8s.replicaset(deploy))
        hang.set_fault("hang", on="all")
        api = await load_api_client(KubeSettings(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        prober = RegistryProber(
            RegistrySettings(allow_networks=list(LOOPBACK_NETWORKS), insecure_registries=[host], probe_budget_s=0.5)
        )
        try:
            started = time.monotonic()
            report = await LatentScanner(api, prober, ScanSettings(concurrency=2)).scan()
            elapsed = time.monotonic() - started
        finally:
            await prober.close()
            await api.close()
    finally:
        await hang.stop()
        await cluster.stop()
    assert {f.risk for f in report.findings} == {Risk.UNCHECKED} and len(report.findings) == 12
    assert sum("not asked again" in f.detail or "in a row" in f.detail for f in report.findings) >= 8
    assert elapsed < 10, elapsed


async def test_a_rate_limited_registry_is_asked_once(
    world: tuple[LatentWorld, SimCluster, list[str]], tmp_path: Path
) -> None:
    latent, cluster, hosts = world
    latent.build(workloads=12, images=12, seeded_per_kind=0, namespaces=1)
    limited = SimRegistry()
    host = await limited.start()
    try:
        for i in range(5):
            deploy = k8s.deployment(f"hub-{i}", "team-0", f"{host}/library/app-{i}:1.0", 1)
            cluster.put(deploy)
            cluster.put(k8s.replicaset(deploy))
        limited.set_fault("rate_limit", on="all")
        api = await load_api_client(KubeSettings(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        prober = RegistryProber(
            RegistrySettings(
                allow_networks=list(LOOPBACK_NETWORKS), insecure_registries=[*hosts, host], probe_budget_s=3.0
            )
        )
        try:
            report = await LatentScanner(api, prober, ScanSettings(concurrency=1)).scan()
        finally:
            await prober.close()
            await api.close()
        risks = [f.risk for f in report.findings if f.workload.startswith("deployment/hub-")]
        assert risks.count(Risk.QUOTA_LOW) == 1 and risks.count(Risk.UNCHECKED) == 4
        assert len(limited.requests) == 1, "the first 429 benches the registry for the rest of the scan"
    finally:
        await limited.stop()
