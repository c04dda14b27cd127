"""Point 2 (Medium): server-side request forgery through registry probes.

(a) a registry redirects a manifest request to an internal URL; (b) its Bearer challenge names an internal token
realm; (c) a user without a grant makes the bot connect to a host:port of their choice through the recreate-secret
form. The hostile registry and the "internal" service are loopback servers; the bot is allowed to reach the
registry's host:port only (`allow_registries`), as production allows one in-cluster registry, and nothing else on
loopback, as production denies private ranges by default.
"""

from __future__ import annotations

import json

from aiohttp import web

from bot.chatops.port import SecretDefaults
from bot.imageref import parse
from bot.registry.probe import RegistryProber
from bot.settings import RegistrySettings
from handlers.modals import recreate_secret_view
from testkit.kube import objects as o
from tests.handlers.conftest import (
    OPS_MEMBER,
    STRANGER,
    World,
    command_body,
    eventually,
    failing_deployment,
    signed_headers,
)
from tests.security.conftest import loopback_server, rebuild, serve_app, submission

INTERNAL_TEXT = "INTERNAL-ADMIN-CONSOLE iam-role-credentials"
INTERNAL_TOKEN = "INTERNAL-TOKEN-7f3a9c"


def _internal(app: web.Application) -> None:
    async def anything(request: web.Request) -> web.Response:
        if request.path == "/token":
            return web.json_response({"token": INTERNAL_TOKEN})
        return web.Response(status=404, text=INTERNAL_TEXT)

    app.router.add_route("*", "/{tail:.*}", anything)


async def _diagnose_through_slack(world: World, registry: str, internal: str) -> str:
    settings = world.flows.settings.model_copy(deep=True)
    settings.registry = RegistrySettings(insecure_registries=[registry], allow_registries=[registry], probe_budget_s=3)
    await rebuild(world, settings)
    pod = failing_deployment(world.sim, image=f"{registry}/team/web:v9")[0]["metadata"]["name"]
    async with serve_app(world) as endpoint:
        body = command_body(f"diagnose shop/{pod}")
        status, _ = await endpoint.post(body, signed_headers(body))
        assert status == 200
        (answer,) = await eventually(lambda: world.slack.ephemerals, timeout=10)
    return answer.text + json.dumps(answer.blocks)


async def test_a_redirect_to_an_internal_url_is_not_followed(world: World) -> None:
    async with loopback_server(_internal) as (internal, internal_seen):

        def hostile(app: web.Application) -> None:
            async def ping(_: web.Request) -> web.Response:
                return web.json_response({})

            async def manifest(_: web.Request) -> web.Response:
                raise web.HTTPFound(f"http://{internal}/latest/meta-data/")

            app.router.add_get("/v2/", ping)
            app.router.add_route("*", "/v2/team/web/manifests/{ref}", manifest)

        async with loopback_server(hostile) as (registry, _):
            text = await _diagnose_through_slack(world, registry, internal)
    assert INTERNAL_TEXT not in text and "INTERNAL" not in text
    assert internal_seen == []


async def test_b_an_internal_token_realm_is_not_fetched(world: World) -> None:
    authorizations: list[str] = []
    async with loopback_server(_internal) as (internal, internal_seen):

        def hostile(app: web.Application) -> None:
            async def challenge(request: web.Request) -> web.Response:
                authorizations.append(request.headers.get("Authorization", ""))
                if request.headers.get("Authorization"):
                    return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}, status=404)
                header = f'Bearer realm="http://{internal}/token",service="evil"'
                return web.Response(status=401, headers={"WWW-Authenticate": header})

            app.router.add_route("*", "/v2/{tail:.*}", challenge)

        async with loopback_server(hostile) as (registry, _):
            await _diagnose_through_slack(world, registry, internal)
    assert internal_seen == []
    assert not any(INTERNAL_TOKEN in a for a in authorizations)


async def test_default_settings_deny_loopback_and_metadata_addresses() -> None:
    """Without an allowance a probe never connects to loopback or link-local (cloud metadata) addresses."""

    async def ping(_: web.Request) -> web.Response:
        return web.json_response({})

    def registry(app: web.Application) -> None:
        app.router.add_get("/v2/", ping)

    async with loopback_server(registry) as (host, seen):
        prober = RegistryProber(RegistrySettings(insecure_registries=[host, "169.254.169.254"], probe_budget_s=2))
        try:
            local = await prober.probe(parse(f"{host}/team/web:v1"), None, None)
            named = await prober.probe(parse(f"localhost:{host.rsplit(':', 1)[1]}/team/web:v1"), None, None)
            metadata = await prober.probe(parse("169.254.169.254/latest/meta-data:v1"), None, None)
        finally:
            await prober.close()
    assert seen == []
    for result in (local, named, metadata):
        assert "denied network range" in result.detail, result


async def _form_probe(world: World, user: str, server: str) -> str:
    async with serve_app(world) as endpoint:
        before = len(world.slack.ephemerals)
        image = f"{server}/team/web:v1"
        view = recreate_secret_view(SecretDefaults("prod", "shop", image=image), "C0ALERTS")
        typed = {"secret": "regcred", "source": "", "server": server, "username": "u", "password": "p4ss-x9"}
        body = submission(view, {**typed, "image": image}, user)
        status, text = await endpoint.post(body, signed_headers(body))
        assert status == 200
        if text:
            return text
        await eventually(lambda: len(world.slack.ephemerals) > before, timeout=10)
        return str(world.slack.ephemerals[-1].text)


async def test_c_the_form_probes_nothing_for_a_user_without_the_grant(world: World) -> None:
    world.sim.put(o.namespace("shop"))

    async def teapot(_: web.Request) -> web.Response:
        return web.Response(status=418, text="open port")

    def listener(app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", teapot)

    async with loopback_server(listener) as (open_port, seen):
        answer_open = await _form_probe(world, STRANGER, open_port)
    async with loopback_server(listener) as (closed_port, _):
        pass  # closed now
    answer_closed = await _form_probe(world, STRANGER, closed_port)
    assert seen == []
    assert answer_open.replace(open_port, "X") == answer_closed.replace(closed_port, "X")
    assert "nothing was checked" in answer_open
    refusals = [r for r in await world.store.list_audit() if r.entry.action == "proposal.refused"]
    assert len(refusals) == 2
    # a user with the grant still has the credentials tested against the registry
    world.registry.add_image("team/web", "v1")
    await _form_probe(world, OPS_MEMBER, world.registry_host)
    assert world.registry.count("/v2/") > 0
