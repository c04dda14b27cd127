"""Expiring credentials (issue 13, point 4): exec plugins and token files are refreshed; a bot without working
credentials says so and recovers by itself.

The simulator accepts tokens of its test exec plugin (testkit/kube/exec_plugin.py, an ExecCredential with a short
`expirationTimestamp`) until they expire and answers 401 after, as EKS does; a revoked token (a rotated token file)
gets 401 too. client-go re-runs the plugin when the credential expires or a request gets 401
(plugin/pkg/client/auth/exec/exec.go) and re-reads token files (transport/token_source.go).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch

from bot.kube.client import credentials_ok, load_api_client
from bot.settings import KubeSettings
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster


async def test_exec_plugin_token_is_refreshed_before_it_expires(sim: SimCluster, tmp_path: Path) -> None:
    """With 2 s tokens, calls 3 s apart keep working: the plugin runs again before expiry."""
    sim.put(o.namespace("shop"))
    runs = tmp_path / "runs"
    path = sim.write_kubeconfig(tmp_path / "kc", exec_ttl_s=2, exec_env={"SIM_EXEC_COUNT_FILE": str(runs)})
    async with await load_api_client(KubeSettings(kubeconfig=path)) as api:
        core = k8s.CoreV1Api(api)
        for _ in range(3):
            assert [n.metadata.name for n in (await core.list_namespace()).items] == ["shop"]
            await asyncio.sleep(1.5)
        assert credentials_ok(api)
    assert len(runs.read_text().splitlines()) >= 2


async def test_expired_exec_token_is_refused_by_the_simulator(sim: SimCluster, tmp_path: Path) -> None:
    """The simulator's strictness on its own: an exec token past its expiry is 401, a forged one too."""
    import time

    import aiohttp

    from testkit.kube.exec_plugin import sign

    async with aiohttp.ClientSession() as session:
        for token, status in (
            (sign(sim.exec_secret, int(time.time()) + 60), 200),
            (sign(sim.exec_secret, int(time.time()) - 1), 401),
            (sign("other-secret", int(time.time()) + 60), 401),
        ):
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{sim.url}/api/v1/namespaces", headers=headers, ssl=sim.client_ssl_context()) as r:
                assert r.status == status, token


async def test_token_file_rotation_is_picked_up_on_401(sim: SimCluster, tmp_path: Path) -> None:
    """A rotated token file (the old token revoked) is re-read after the 401 and the call repeated."""
    token_file = tmp_path / "token"
    sim.add_token("first-token")
    token_file.write_text("first-token\n")
    path = sim.write_kubeconfig(tmp_path / "kc", token_file=token_file)
    async with await load_api_client(KubeSettings(kubeconfig=path)) as api:
        core = k8s.CoreV1Api(api)
        await core.list_namespace()
        sim.add_token("second-token")
        token_file.write_text("second-token\n")
        sim.revoke("first-token")
        await core.list_namespace()  # 401, re-read, repeated
        assert credentials_ok(api)


async def test_lost_credentials_are_reported_and_recovered(sim: SimCluster, tmp_path: Path) -> None:
    """While the plugin fails, calls fail with 401 and credentials_ok is False; once it works, it recovers."""
    fail = tmp_path / "fail"
    env = {"SIM_EXEC_FAIL_FILE": str(fail)}
    path = sim.write_kubeconfig(tmp_path / "kc", exec_ttl_s=1, exec_env=env)
    async with await load_api_client(KubeSettings(kubeconfig=path)) as api:
        core = k8s.CoreV1Api(api)
        await core.list_namespace()
        fail.write_text("x")
        await asyncio.sleep(1.2)  # the token expires; the plugin now fails
        with pytest.raises(k8s.ApiException) as err:
            await core.list_namespace()
        assert err.value.status == 401
        assert not credentials_ok(api)
        assert "exec" in (api.credentials.problem or "")
        fail.unlink()
        await core.list_namespace()
        assert credentials_ok(api)


async def test_a_watch_refreshes_on_401(sim: SimCluster, tmp_path: Path) -> None:
    """A watch opened with an expired token (not preloaded: no exception) is repeated with a fresh one."""
    sim.put(o.namespace("shop"))
    path = sim.write_kubeconfig(tmp_path / "kc", exec_ttl_s=1)
    async with await load_api_client(KubeSettings(kubeconfig=path)) as api:
        core = k8s.CoreV1Api(api)
        await core.list_namespace()
        api.credentials._skew_s = 0.0  # no early refresh: the expired token goes out and gets 401
        await asyncio.sleep(1.3)
        names = []
        async for event in watch.Watch().stream(core.list_namespace, timeout_seconds=1):
            names.append(json.dumps(event["raw_object"]["metadata"]["name"]))
        assert names == ['"shop"']


async def test_the_bot_says_so_in_readyz_and_recovers(tmp_path: Path) -> None:
    """The whole bot on exec-plugin credentials: /readyz fails while the plugin gives nothing, passes once it does."""
    from aiohttp.test_utils import TestClient, TestServer

    from tests.e2e_world import bot_settings, running, until, world_for

    async with world_for(tmp_path / "world") as world:
        fail = tmp_path / "fail"
        kubeconfig = world.cluster.write_kubeconfig(
            tmp_path / "exec-kc", exec_ttl_s=1, exec_env={"SIM_EXEC_FAIL_FILE": str(fail)}
        )
        settings = bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        settings.kube.kubeconfig = kubeconfig

        async with running(settings) as bot:

            async def ready() -> tuple[int, dict[str, bool]]:
                async with TestClient(TestServer(bot.health())) as http:
                    response = await http.get("/readyz")
                    return response.status, (await response.json())["checks"]

            async def checks_are(status: int, credentials: bool) -> bool:
                got = await ready()
                return got[0] == status and got[1]["kube_credentials"] is credentials

            await until(lambda: checks_are(200, True), what="ready")
            fail.write_text("x")
            await until(lambda: checks_are(503, False), what="credentials reported lost")
            fail.unlink()
            await until(lambda: checks_are(200, True), what="recovered")
