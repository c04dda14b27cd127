"""`/imagepull report [7d|30d]` through the real Bolt app: the team's figures from stored incidents and audit rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.chatops.grammar import Command, ParseError, Verb, parse
from bot.model import Cause, Incident, IncidentStatus, WorkloadRef
from tests.handlers.conftest import CHANNEL, SlackEndpoint, World, command_body, eventually, signed_headers


def test_grammar_of_report() -> None:
    assert parse("report") == Command(Verb.REPORT, name="7d")
    assert parse("report 30d") == Command(Verb.REPORT, name="30d")
    for bad in ("report 90d", "report 7d 30d", "report --deep"):
        with pytest.raises(ParseError):
            parse(bad)


async def test_report_in_slack(world: World, endpoint: SlackEndpoint) -> None:
    now = datetime.now(UTC)
    first = now - timedelta(days=2)
    await world.store.save_incident(
        Incident(
            key="inc-r1",
            cluster="prod",
            namespace="shop",
            workload=WorkloadRef("Deployment", "web"),
            container="web",
            image="r.example/web:1",
            registry="r.example",
            cause=Cause.TAG_NOT_FOUND,
            channel=CHANNEL,
            first_seen=first,
            last_seen=first,
            status=IncidentStatus.RESOLVED,
            resolved_at=first + timedelta(minutes=12),
        )
    )
    body = command_body("report 30d")
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200
    (answer,) = await eventually(lambda: world.slack.ephemerals)
    assert "last 30 days" in answer.text and "1 incident(s): 1 resolved" in answer.text
    assert "`tag_not_found`: 1, 12m / 12m" in answer.text
