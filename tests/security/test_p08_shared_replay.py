"""Point 8 (Low): replay protection was per process.

(a) A signed request handled by one replica, replayed within Bolt's five-minute window to a second replica (its
own process memory, the same database): refused with 401, one proposal only. (b) A Socket Mode envelope delivered
twice (same envelope_id, as Slack redelivers when an ack is late): one proposal only, and the redelivery is acked.
"""

from __future__ import annotations

import asyncio

from bot.flows import Flows
from bot.kube.client import load_api_client
from bot.registry.probe import RegistryProber
from bot.slack.bolt_app import build_app, run_socket_mode
from bot.store.store import Store
from handlers import register_all
from testkit.slack.socket_mode import FakeSocketMode
from tests.handlers.conftest import (
    World,
    command_body,
    eventually,
    eventually_async,
    failing_deployment,
    signed_headers,
)
from tests.security.conftest import serve_app


async def _second_replica(world: World) -> Flows:
    settings = world.flows.settings
    api = await load_api_client(settings.kube)
    store = await Store.open(world.db_url)
    prober = RegistryProber(settings.registry)
    world._closers += [prober.close, api.close, store.close]
    return Flows(settings=settings, store=store, api=api, prober=prober, slack=world.client, identity="prod-2")


async def test_a_request_replayed_to_another_replica_is_refused(world: World) -> None:
    pod = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")[0]["metadata"]["name"]
    body = command_body(f"delete-pod shop/{pod}")
    headers = signed_headers(body)
    replica_one = world.flows
    async with serve_app(world) as first:
        assert (await first.post(body, headers))[0] == 200
        await eventually_async(world.store.pending_proposals)
    world.flows = await _second_replica(world)
    async with serve_app(world) as second:
        status, _ = await second.post(body, headers)
    assert status == 401
    await asyncio.sleep(0.3)
    assert len(await replica_one.store.pending_proposals()) == 1


async def test_a_redelivered_socket_mode_envelope_runs_once(world: World) -> None:
    pod = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")[0]["metadata"]["name"]
    async with FakeSocketMode() as socket:
        world.slack.socket_url = socket.url
        app = build_app(
            world.flows.settings.model_copy(
                update={"slack": world.flows.settings.slack.model_copy(update={"mode": "socket"})}
            ),
            client=world.client,
            register=lambda a: register_all(a, world.flows),
        )
        task = asyncio.create_task(run_socket_mode(app, "xapp-test-app-token", world.flows.first_delivery))
        try:
            envelope_id = await socket.send_slash_command("/imagepull", f"delete-pod shop/{pod}", user_id="U_REQ")
            await socket.wait_ack(envelope_id)
            await eventually_async(world.store.pending_proposals)
            socket.acks.clear()
            await socket.redeliver(envelope_id)
            await eventually(lambda: envelope_id in socket.acks)
            await asyncio.sleep(0.3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(await world.store.pending_proposals()) == 1
