"""Building the Kubernetes API client from settings: a kubeconfig file, the pod's service account, or ~/.kube/config."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kubernetes_asyncio import client, config

from bot.settings import KubeSettings

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


async def load_api_client(
    settings: KubeSettings, service_account_token: Path = SERVICE_ACCOUNT_TOKEN
) -> client.ApiClient:
    """An ApiClient for settings.kubeconfig (and context), else in-cluster config inside a pod, else ~/.kube/config."""
    # The client logs whole response bodies (Secrets included) at DEBUG: never let that logger go below WARNING.
    logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.WARNING)
    if settings.kubeconfig is not None:
        log.info("kubernetes: kubeconfig %s, context %s", settings.kubeconfig, settings.context or "(current)")
        return await config.new_client_from_config(config_file=str(settings.kubeconfig), context=settings.context)
    if await asyncio.to_thread(service_account_token.exists):
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            log.info("kubernetes: not using in-cluster config: %s", exc)
        else:
            log.info("kubernetes: in-cluster service account")
            return client.ApiClient(configuration=configuration)
    log.info("kubernetes: default kubeconfig, context %s", settings.context or "(current)")
    return await config.new_client_from_config(context=settings.context)
