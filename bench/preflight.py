"""The latent-failure scan on a seeded cluster: `python -m bench.preflight --workloads 2000 --images 300`.

A simulated API server holds `--workloads` Deployments (each with its ReplicaSet and a running pod) on amd64 and
arm64 nodes; images live in two real Debian `docker-registry` processes (one anonymous, one with htpasswd Basic auth
for two users, one of whose passwords is a JWT that expires within the warning window) and in one simulated registry
that reports a nearly spent Docker Hub-style pull quota (`docker-registry` sends no `ratelimit-*` headers). Each kind
of latent failure is seeded `--seeded-per-kind` times (testkit/latent.py); the rest are healthy. The real scanner
(`bot.prevention.scanner`, with the real registry prober and kubernetes_asyncio) runs once. Registry requests are
counted on the prober's HTTP session. Last stdout line:
`{"workloads", "images", "seeded", "found", "false_positives", "registry_requests", "seconds", ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bot.kube.client import load_api_client
from bot.prevention.findings import Risk
from bot.prevention.scanner import LatentScanner, ScanSettings
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import RegistryProber
from bot.settings import KubeSettings, RegistrySettings
from testkit.kube.apiserver import SimCluster
from testkit.latent import LatentWorld, RegistryHandle, jwt_expiring_in
from testkit.oci.docker_registry import Pusher, RealRegistryProcess
from testkit.oci.simregistry import SimRegistry
from testkit.world import setup_logging

USER, PASSWORD, JWT_USER = "robot", "bench-password-41x", "jwtbot"


def _htpasswd(folder: Path, users: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True).stdout.strip()
        for u, p in users.items()
    ]
    path = folder / "htpasswd"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _real(proc: RealRegistryProcess, auth: tuple[str, str] | None = None) -> RegistryHandle:
    pusher = Pusher(proc.base, auth=auth)
    return RegistryHandle(proc.host, lambda repo, tag, platforms: pusher.index(repo, tag, platforms))


def _sim(reg: SimRegistry, host: str) -> RegistryHandle:
    return RegistryHandle(host, lambda repo, tag, platforms: reg.add_image(repo, tag, platforms, index=True))


async def measure(workloads: int, images: int, seeded_per_kind: int, workdir: Path) -> dict[str, Any]:
    jwt = jwt_expiring_in(timedelta(minutes=45))
    public = RealRegistryProcess.start(workdir / "public")
    private = RealRegistryProcess.start(
        workdir / "private", htpasswd=_htpasswd(workdir / "private", {USER: PASSWORD, JWT_USER: jwt})
    )
    limited = SimRegistry()
    cluster = SimCluster()
    try:
        limited_host = await limited.start()
        limited.ratelimit = (100, 4)
        await cluster.start()
        world = LatentWorld(
            cluster,
            public=_real(public),
            private=_real(private, (USER, PASSWORD)),
            limited=_sim(limited, limited_host),
            private_jwt=_real(private, (USER, PASSWORD)),
            user=USER,
            password=PASSWORD,
            jwt_user=JWT_USER,
            jwt_password=jwt,
        )
        await asyncio.to_thread(world.build, workloads, images, seeded_per_kind=seeded_per_kind)
        requests = 0

        async def count(*_: object) -> None:
            nonlocal requests
            requests += 1

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(count)
        session = aiohttp.ClientSession(trace_configs=[trace], connector=aiohttp.TCPConnector(limit_per_host=8))
        api = await load_api_client(KubeSettings(kubeconfig=cluster.write_kubeconfig(workdir / "kubeconfig")))
        hosts = [public.host, private.host, limited_host]
        prober = RegistryProber(
            RegistrySettings(allow_networks=list(LOOPBACK_NETWORKS), insecure_registries=hosts, probe_budget_s=5.0),
            session=session,
        )
        try:
            started = time.monotonic()
            report = await LatentScanner(api, prober, ScanSettings(max_per_registry_per_minute=100_000)).scan()
            seconds = time.monotonic() - started
        finally:
            await session.close()
            await api.close()
    finally:
        await cluster.stop()
        await limited.stop()
        public.stop()
        private.stop()
    found = {(f.risk, f.namespace, f.workload) for f in report.findings if f.risk is not Risk.UNCHECKED}
    seeded = {(s.risk, s.namespace, s.workload) for s in world.seeds}
    return {
        "workloads": report.workloads,
        "images": report.images,
        "seeded": len(seeded),
        "found": len(seeded & found),
        "false_positives": len(found - seeded),
        "registry_requests": requests,
        "seconds": round(seconds, 2),
        "registry_checks": report.checks,
        "requests_per_image": round(requests / max(1, report.images), 2),
        "unchecked": sum(1 for f in report.findings if f.risk is Risk.UNCHECKED),
        "missed": sorted(f"{r.value} {ns}/{w}" for r, ns, w in seeded - found),
        "could_not_read": report.could_not_read,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workloads", type=int, default=2000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seeded-per-kind", type=int, default=3)
    args = parser.parse_args(argv)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="ipd-preflight-") as tmp:
        result = asyncio.run(measure(args.workloads, args.images, args.seeded_per_kind, Path(tmp)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
