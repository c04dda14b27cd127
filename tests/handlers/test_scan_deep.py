"""`/imagepull scan --deep` through the real Bolt app (signed HTTP), and its grammar."""

from __future__ import annotations

import pytest

from bot.chatops.grammar import Command, ParseError, Verb, parse
from bot.prevention.findings import Finding, Risk
from bot.prevention.render import MAX_LINES, render_findings
from testkit.kube import objects as o
from tests.handlers.conftest import SlackEndpoint, World, command_body, eventually, signed_headers


def test_grammar_of_scan_deep() -> None:
    assert parse("scan --deep shop") == Command(Verb.SCAN, namespace="shop", deep=True)
    assert parse("scan shop") == Command(Verb.SCAN, namespace="shop")
    assert parse("scan --deep") == Command(Verb.SCAN, deep=True)
    for bad in ("scan --deep --deep", "status --deep", "diagnose --deep shop/x", "scan --deep=yes"):
        with pytest.raises(ParseError):
            parse(bad)
    cmd = Command(Verb.SCAN, namespace="shop", deep=True)
    assert Command.from_params(cmd.to_params()) == cmd
    assert "cmd_deep" not in Command(Verb.SCAN).to_params()


def test_a_long_report_is_capped_and_escaped() -> None:
    many = [
        Finding(Risk.TAG_GONE, "shop", f"deployment/app-{i}", "app", "r.example/a:1", "<!channel> gone", "kubectl x")
        for i in range(500)
    ]
    text = render_findings(many, "head")
    assert text.count("\n• ") == MAX_LINES and "460 more" in text
    assert "<!channel>" not in text and len(text) < 40_000


async def test_scan_deep_in_slack_names_the_workload_at_risk(world: World, endpoint: SlackEndpoint) -> None:
    """A Deployment whose tag the registry no longer has is reported before any pod fails."""
    world.registry.add_image("shop/api", "2.0.0")
    world.sim.put(o.namespace("shop"))
    world.sim.put(o.node("node-a", arch="amd64"))
    world.sim.put(o.service_account("default", "shop"))
    deploy = o.deployment("api", "shop", f"{world.registry_host}/shop/api:1.9.0", 1)
    rs = o.replicaset(deploy)
    for obj in (deploy, rs, o.set_running(o.pod_for(rs, 0, node_name="node-a"), "api")):
        world.sim.put(obj)
    body = command_body("scan --deep shop")
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200
    (answer,) = await eventually(lambda: world.slack.ephemerals, timeout=15)
    assert "1 workload(s) at risk" in answer.text and "tag or digest gone" in answer.text
    assert "deployment/api" in answer.text and "2.0.0" in answer.text
