"""Point 10 (Low): the `scan` reply text was unbounded (600,000 characters seen; Slack's limit is 40,000).

Thirty failing workloads with 20,000-character image names are scanned through the real Slack app: every text the
bot sends stays within Slack's limits.
"""

from __future__ import annotations

from tests.handlers.conftest import SlackEndpoint, World, command_body, eventually, failing_deployment, signed_headers

SLACK_TEXT_MAX = 40_000


async def test_scan_text_stays_within_slacks_limit(world: World, endpoint: SlackEndpoint) -> None:
    for i in range(30):
        failing_deployment(world.sim, name=f"web{i}", image=f"registry.invalid/{'a' * 20_000}{i}:v1")
    body = command_body("scan")
    assert (await endpoint.post(body, signed_headers(body)))[0] == 200
    (answer,) = await eventually(lambda: world.slack.ephemerals, timeout=15)
    for call in world.slack.calls:
        text = call.payload.get("text")
        assert not isinstance(text, str) or len(text) <= SLACK_TEXT_MAX, (call.method, len(text))
    assert len(answer.text) <= SLACK_TEXT_MAX
    for block in answer.blocks or []:
        assert len(str((block.get("text") or {}).get("text", ""))) <= 3000
