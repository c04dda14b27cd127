"""A second real client: kubectl 1.27 and 1.33 drive the simulated API server over HTTPS with its kubeconfig.

Real subprocesses, bounded by timeouts, KUBECONFIG pointing at the simulator's kubeconfig and a private HOME (kubectl
caches discovery and OpenAPI documents under ~/.kube/cache). Each verb needs something a real API server offers:
TLS with the CA in the kubeconfig (kubectl sends no bearer token to a plain-HTTP server), discovery, server-side
Tables (`get`), field selectors on events (`describe`), the OpenAPI documents (`apply` with validation), the three
patch formats (`apply`, `patch --type=json`, `set image`) and graceful deletion that kubectl waits out (`delete`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster

pytestmark = pytest.mark.integration

_DIRS = ("/usr/lib/google-cloud-sdk/bin", "/usr/local/bin", "/usr/bin")
VERSIONS = ("1.27", "1.33")


def kubectl_binary(version: str) -> str:
    """The path of `kubectl.<version>` (on PATH or where the Cloud SDK installs it), or skip."""
    name = f"kubectl.{version}"
    found = shutil.which(name) or next((f"{d}/{name}" for d in _DIRS if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


class Kubectl:
    """Runs one kubectl version against a kubeconfig, each call bounded."""

    def __init__(self, binary: str, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    async def start(self, *args: str, stdin: bytes | None = None) -> asyncio.subprocess.Process:
        """Start kubectl (standard input from `stdin` when given)."""
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        return proc

    async def finish(self, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> str:
        """Wait for kubectl (killing it after `timeout`); its standard output, or fail with its error."""
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kubectl did not finish within {timeout}s") from None
        assert proc.returncode == 0, f"kubectl failed ({proc.returncode}): {err.decode()}"
        return out.decode()

    async def __call__(self, *args: str, stdin: bytes | None = None, timeout: float = 30.0) -> str:
        return await self.finish(await self.start(*args, stdin=stdin), timeout)


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    """A simulated cluster with one node, a running pod and a pod failing to pull (with kubelet's events)."""
    sim = SimCluster(bookmark_interval_s=0.5)
    await sim.start()
    sim.put(o.node("node-1"))
    sim.put(o.pod("web", "shop"))
    bad = sim.put(o.pod("bad", "shop", image="nginx:9.9", waiting={"app": ("ImagePullBackOff", None)}))
    for ev in o.pull_events(bad, "app"):
        sim.put(ev)
    yield sim
    await sim.stop()


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, cluster: SimCluster, tmp_path: Path) -> Kubectl:
    """kubectl of one version, configured by the simulator's kubeconfig (HTTPS, CA data, bearer token)."""
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubectl_binary(request.param), cluster.write_kubeconfig(tmp_path / "kubeconfig"), home)


async def test_the_kubeconfig_is_https_with_ca_data(cluster: SimCluster, tmp_path: Path) -> None:
    """The server speaks TLS only; the kubeconfig carries the CA (as kubeadm's admin.conf does) and the token."""
    import yaml

    config = yaml.safe_load(cluster.write_kubeconfig(tmp_path / "kc").read_text())
    entry = config["clusters"][0]["cluster"]
    assert entry["server"].startswith("https://127.0.0.1:")
    assert entry["certificate-authority-data"]
    assert config["users"][0]["user"]["token"] == cluster.token


async def test_get_pods_all_namespaces(kubectl: Kubectl) -> None:
    """`get pods -A` prints the server's Table: READY and a STATUS that names the pull failure."""
    out = await kubectl("get", "pods", "-A")
    rows = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert out.split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows["bad"][:5] == ["shop", "bad", "0/1", "ImagePullBackOff", "0"]
    assert rows["web"][:5] == ["shop", "web", "1/1", "Running", "0"]


async def test_describe_pod_shows_kubelet_events(kubectl: Kubectl) -> None:
    """`describe pod` reads the pod and its events (field selector on involvedObject)."""
    out = await kubectl("describe", "pod", "-n", "shop", "bad")
    assert "ImagePullBackOff" in out
    assert 'Failed to pull image "nginx:9.9"' in out
    assert "Back-off pulling image" in out


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "shop"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "api"}},
        "template": {
            "metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": "nginx:1.25"}]},
        },
    },
}


async def test_apply_patch_and_set_image(kubectl: Kubectl, cluster: SimCluster) -> None:
    """`apply -f` (validated: OpenAPI documents), again (unchanged), `patch --type=json`, `set image`."""
    manifest = json.dumps(DEPLOYMENT).encode()
    assert "deployment.apps/api created" in await kubectl("apply", "-f", "-", stdin=manifest)
    assert "deployment.apps/api unchanged" in await kubectl("apply", "-f", "-", stdin=manifest)
    replicas = '[{"op": "replace", "path": "/spec/replicas", "value": 3}]'
    await kubectl("-n", "shop", "patch", "deployment", "api", "--type=json", "-p", replicas)
    await kubectl("-n", "shop", "set", "image", "deployment/api", "api=nginx:1.26")
    stored = cluster.get("Deployment", "shop", "api")
    assert stored is not None
    assert stored["spec"]["replicas"] == 3
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    applied = stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(applied)["spec"]["replicas"] == 1


async def test_apply_unknown_field_is_refused(kubectl: Kubectl, cluster: SimCluster) -> None:
    """With validation (the default), an unknown field is an error, whichever side validates."""
    bad = json.loads(json.dumps(DEPLOYMENT))
    bad["spec"]["replicaz"] = 2
    proc = await kubectl.start("apply", "-f", "-", stdin=json.dumps(bad).encode())
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert "replicaz" in err.decode()
    assert cluster.get("Deployment", "shop", "api") is None


async def test_delete_pod(kubectl: Kubectl, cluster: SimCluster) -> None:
    """`delete pod` deletes gracefully and waits (watching) while the pod is Terminating, until its kubelet confirms."""
    proc = await kubectl.start("delete", "pod", "-n", "shop", "web")
    for _ in range(200):
        if cluster.terminating("shop", "web"):
            break
        await asyncio.sleep(0.05)
    assert cluster.terminating("shop", "web")
    await asyncio.sleep(0.5)
    assert proc.returncode is None  # still waiting for the pod to go
    assert cluster.finish_deletion("shop", "web") is not None
    out = await kubectl.finish(proc)
    assert 'pod "web" deleted' in out
    assert cluster.get("Pod", "shop", "web") is None


async def test_get_shows_terminating(kubectl: Kubectl, cluster: SimCluster) -> None:
    """A pod being deleted shows STATUS Terminating, as printPod prints it."""
    cluster.delete("Pod", "shop", "web", grace_period_s=None)
    out = await kubectl("get", "pod", "-n", "shop", "web", "--no-headers")
    assert out.split()[2] == "Terminating"


async def test_imagepull_doctor_sim_serves_https_to_kubectl(tmp_path: Path) -> None:
    """`imagepull-doctor sim` (the public entry point) serves HTTPS: its URL says so and kubectl reads its objects."""
    import sys

    binary = kubectl_binary("1.33")
    pod = o.pod("bad", "shop", image="nginx:9.9", waiting={"app": ("ImagePullBackOff", None)})
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [o.namespace("shop"), pod]}))
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "sim", "--objects", str(objects), "--kubeconfig", str(kubeconfig),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert ready["url"].startswith("https://127.0.0.1:")
        home = tmp_path / "home"
        home.mkdir()
        out = await Kubectl(binary, kubeconfig, home)("get", "pods", "-A", "--no-headers")
        assert out.split()[:4] == ["shop", "bad", "0/1", "ImagePullBackOff"]
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
