"""Building the API client: kubeconfig with a context, the default kubeconfig, in-cluster service account."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.config import incluster_config, kube_config

from bot.kube.client import load_api_client
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


async def test_kubeconfig_with_context_talks_to_the_sim(sim: SimCluster, tmp_path: Path) -> None:
    """A kubeconfig written by the sim, with its context named, gives a working authenticated client."""
    sim.put(o.namespace("shop"))
    path = sim.write_kubeconfig(tmp_path / "config", context="lab")
    async with await load_api_client(KubeSettings(kubeconfig=path, context="lab")) as api:
        names = [ns.metadata.name for ns in (await k8s.CoreV1Api(api).list_namespace()).items]
    assert names == ["shop"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_default_kubeconfig_when_none_configured(
    sim: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without settings.kubeconfig and outside a pod, the default kubeconfig location is used."""
    path = sim.write_kubeconfig(tmp_path / "config")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    async with await load_api_client(KubeSettings(), service_account_token=tmp_path / "absent") as api:
        assert api.configuration.host == sim.url
        await k8s.CoreV1Api(api).list_namespace()


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A self-signed CA certificate file, as a pod's service account mounts one."""
    ca = tmp_path / "ca.crt"
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a CA certificate for the in-cluster config")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(ca),
            "-days",
            "1",
            "-subj",
            "/CN=sim-ca",
        ],
        check=True,
        capture_output=True,
    )
    return ca


async def test_in_cluster_service_account(tmp_path: Path, ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a pod (service account token present), the in-cluster config is used."""
    token = tmp_path / "token"
    token.write_text("in-cluster-token")
    ca = ca_file
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    async with await load_api_client(KubeSettings(), service_account_token=token) as api:
        assert api.configuration.host == "https://127.0.0.1:6443"
        assert api.configuration.api_key["BearerToken"] == "Bearer in-cluster-token"
