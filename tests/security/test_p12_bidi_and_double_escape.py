"""Point 12 (Low): right-to-left override characters reached Slack; evidence lines were escaped twice.

Through the real Slack app, a pod whose kubelet message carries U+202E (RIGHT-TO-LEFT OVERRIDE) and other bidi
controls, and whose registry answers with an HTML error (`<b>…</b>`), is diagnosed: no bidi control reaches any
Slack call, and users read `<b>` as `&lt;b&gt;` once, never `&amp;lt;`.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from bot.settings import RegistrySettings
from testkit.kube import objects as o
from tests.handlers.conftest import World, command_body, eventually, failing_deployment, signed_headers
from tests.security.conftest import loopback_server, rebuild, serve_app

BIDI = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")


def _html_registry(app: web.Application) -> None:
    async def ping(_: web.Request) -> web.Response:
        return web.json_response({})

    async def manifest(_: web.Request) -> web.Response:
        return web.Response(status=400, text="<b>bad request</b> \u202etxt.exe", content_type="text/html")

    app.router.add_get("/v2/", ping)
    app.router.add_route("*", "/v2/team/web/manifests/{ref}", manifest)


async def test_no_bidi_control_and_no_double_escape_in_slack(world: World) -> None:
    async with loopback_server(_html_registry) as (registry, _):
        settings = world.flows.settings.model_copy(deep=True)
        settings.registry = RegistrySettings(
            insecure_registries=[registry], allow_networks=["127.0.0.0/8"], probe_budget_s=3
        )
        await rebuild(world, settings)
        image = f"{registry}/team/web:v9"
        (pod,) = failing_deployment(world.sim, image=image)
        message = o.pull_error(
            image, f'failed to resolve reference "{image}": \u202eexe.gnp\u202c \u2066x\u2069: not found'
        )
        world.sim.put(o.set_waiting(pod, "web", "ErrImagePull", message))
        async with serve_app(world) as endpoint:
            body = command_body(f"diagnose shop/{pod['metadata']['name']}")
            assert (await endpoint.post(body, signed_headers(body)))[0] == 200
            await eventually(lambda: world.slack.ephemerals, timeout=10)
    sent = json.dumps([c.payload for c in world.slack.calls], ensure_ascii=False)
    assert "bad request" in sent  # the registry's answer is shown
    assert not BIDI.search(sent), [m.group(0).encode("unicode_escape") for m in BIDI.finditer(sent)]
    assert "&amp;lt;" not in sent and "&amp;gt;" not in sent
