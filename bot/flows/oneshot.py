"""The CLI's `diagnose NS/POD`: one diagnosis with clients built for it and closed after."""

from __future__ import annotations

from bot.diagnoser import Diagnoser
from bot.flows.reader import PodReader
from bot.kube.client import load_api_client
from bot.kube.inspect import Inspector
from bot.model import Diagnosis, PullFailure
from bot.registry.probe import RegistryProber
from bot.settings import Settings


async def diagnose_pod_once(settings: Settings, namespace: str, pod: str) -> list[tuple[PullFailure, Diagnosis]]:
    """Build the clients, diagnose each failing container of one pod with a fresh probe, close the clients."""
    api = await load_api_client(settings.kube)
    prober = RegistryProber(settings.registry)
    try:
        inspector = Inspector.from_settings(api, settings.kube)
        diagnoser = Diagnoser(inspector, prober, fresh=True)
        reader = PodReader(api, inspector, settings.kube.cluster_name)
        if await reader.pod_dict(namespace, pod) is None:
            raise LookupError(f"pod {namespace}/{pod} not found")
        failures = await reader.failures_of_pod(namespace, pod)
        return [(f, await diagnoser.diagnose(f)) for f in failures]
    finally:
        await prober.close()
        await api.close()
