"""Rendering (pure): content of each message, escaping of hostile cluster text, Slack's limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.model import ActionKind, Cause, Diagnosis, Evidence, Facts, FixCommand, IncidentScope, IncidentStatus
from bot.slack import render
from tests.slack.conftest import incident

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

DIAGNOSIS = Diagnosis(
    cause=Cause.PULL_SECRET_MISSING,
    summary="The pod references pull secret regcred, which does not exist in namespace shop.",
    confidence=0.95,
    facts=Facts(registry="reg.example"),
    evidence=(
        Evidence("secret regcred referenced by the pod", "cluster", None),
        Evidence("secret regcred exists", "cluster", False),
        Evidence("registry answers 401 without credentials", "registry", True),
    ),
    fixes=(
        FixCommand("Copy the secret from another namespace", "kubectl get secret regcred -n base -o yaml", False),
        FixCommand("Create the secret", "kubectl create secret docker-registry regcred -n shop ...", True),
    ),
    actions=(ActionKind.RECREATE_SECRET, ActionKind.REDIAGNOSE, ActionKind.SNOOZE),
    raw_message='Failed to pull image "reg.example/web:v9": 401 Unauthorized',
    message_cause=Cause.AUTH_FAILED,
)


def all_text(message: render.SlackMessage) -> str:
    """Every string in the blocks, joined (what a user can see)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            out.append(node)

    walk(message.blocks)
    return "\n".join(out)


def sections(message: render.SlackMessage) -> list[str]:
    texts = []
    for b in message.blocks:
        if isinstance(b.get("text"), dict):
            texts.append(b["text"]["text"])  # type: ignore[index]
        for f in b.get("fields", []) or []:  # type: ignore[attr-defined]
            texts.append(f["text"])
    return texts


def test_parent_of_an_open_incident() -> None:
    """The parent names state, workload, namespace, cluster, image, cause id and title, pods and times."""
    m = render.render_parent(incident(pods=("web-1", "web-2"), pods_seen=3, diagnosis=DIAGNOSIS))
    text = all_text(m)
    for expected in (
        ":red_circle:",
        "OPEN",
        "`deployment/web`",
        "`shop`",
        "`prod`",
        "`reg.example/web:v9`",
        "`tag_not_found`",
        "Tag or digest not found",
        "`web-1`, `web-2`",
        "2026-11-23 10:00:00 UTC",
        "2026-11-23 10:01:00 UTC",
    ):
        assert expected in text, expected
    assert "*Pods seen*\n3" in sections(m)
    assert m.text.startswith("OPEN: deployment/web in shop (prod): tag_not_found")


def test_parent_of_a_resolved_incident_shows_the_duration() -> None:
    """A resolved parent says so and how long the incident lasted."""
    inc = incident(status=IncidentStatus.RESOLVED, resolved_at=T0 + timedelta(minutes=4, seconds=12), pods=())
    m = render.render_parent(inc)
    assert ":white_check_mark:" in all_text(m)
    assert "*Resolved after*\n4m12s" in sections(m)
    assert "resolved after 4m12s" in m.text


def test_parent_of_a_snoozed_incident() -> None:
    """A snoozed incident shows the snooze emoji and until when."""
    m = render.render_parent(incident(snoozed_until=T0 + timedelta(hours=1)))
    assert ":zzz: *SNOOZED*" in all_text(m)
    assert "*Snoozed until*\n2026-11-23 11:00:00 UTC" in sections(m)


def test_registry_parent_lists_affected_workloads() -> None:
    """A registry incident's parent names the registry and lists the workloads, with a count."""
    inc = incident(
        "reg-key",
        scope=IncidentScope.REGISTRY,
        cause=Cause.RATE_LIMITED,
        registry="docker.io",
        affected=tuple(f"ns{i}/app{i}" for i in range(25)),
    )
    m = render.render_parent(inc)
    text = all_text(m)
    assert "registry `docker.io`" in text
    assert "`rate_limited`" in text
    assert "25 workloads affected" in text
    assert "`ns0/app0`" in text
    assert "+5 more" in text


def test_diagnosis_reply() -> None:
    """Summary, cause, confidence, evidence marks, titled fix commands in code blocks, raw message, buttons."""
    m = render.render_diagnosis(incident(), DIAGNOSIS)
    text = all_text(m)
    assert "`pull_secret_missing`" in text
    assert "confidence* 95%" in text
    assert ":small_blue_diamond: secret regcred referenced by the pod _(cluster)_" in text
    assert ":x: secret regcred exists" in text
    assert ":white_check_mark: registry answers 401" in text
    assert "*1. Copy the secret from another namespace*\n```\nkubectl get secret regcred -n base -o yaml\n```" in text
    assert "*2. Create the secret* _(changes the cluster)_" in text
    assert "`auth_failed`" in text  # what the message alone said
    assert '```\nFailed to pull image "reg.example/web:v9": 401 Unauthorized\n```' in text
    (actions,) = [b for b in m.blocks if b["type"] == "actions"]
    buttons = actions["elements"]
    assert isinstance(buttons, list)
    assert [b["action_id"] for b in buttons] == [
        "imagepull:recreate_secret",
        "imagepull:rediagnose",
        "imagepull:snooze",
    ]
    assert json.loads(buttons[0]["value"]) == {"incident": incident().key}
    assert "pull_secret_missing" in m.text


def test_new_fact_resolved_and_reopened_replies() -> None:
    """The small replies say what changed."""
    inc = incident(resolved_at=T0 + timedelta(minutes=4, seconds=12))
    assert render.render_resolved(inc, "started").text == "Resolved after 4m12s: container started"
    fact = render.render_new_fact(inc, ["3 more pods: a, b, c", "cause changed to auth_failed"])
    assert "• 3 more pods: a, b, c\n• cause changed to auth_failed" in all_text(fact)
    more = render.render_more_pods(inc, ["a", "b", "c"])
    assert "3 more pods: `a`, `b`, `c`" in all_text(more)
    changed = render.render_cause_changed(inc, Cause.AUTH_FAILED, DIAGNOSIS)
    assert "from `auth_failed` to `pull_secret_missing`" in all_text(changed)
    reopened = render.render_reopened(replace(inc, reopened=2), DIAGNOSIS)
    assert "*Reopened* (2×)" in all_text(reopened)


HOSTILE = "<!channel> <@U123ABC> <http://evil.example|click> & `x` ```rm -rf``` @here ``` unbalanced"


def test_hostile_cluster_text_is_neutralised() -> None:
    """Mentions, links, entities and fences from cluster text cannot notify, link or break the markup."""
    d = replace(
        DIAGNOSIS,
        summary=HOSTILE,
        evidence=(Evidence(HOSTILE, "cluster", False),),
        fixes=(FixCommand(HOSTILE, "echo " + HOSTILE),),
        raw_message=HOSTILE,
    )
    inc = incident(HOSTILE, namespace=HOSTILE, image=HOSTILE, pods=(HOSTILE,), diagnosis=d)
    for m in (
        render.render_parent(inc),
        render.render_diagnosis(inc, d),
        render.render_new_fact(inc, [HOSTILE]),
        render.render_resolved(inc, HOSTILE),
    ):
        for s in [*sections(m), m.text]:
            assert "<!" not in s
            assert "<@" not in s
            assert "<http" not in s
            assert "@here" not in s
            assert "&lt;!channel&gt;" in s or "channel" not in s
            # every fence opens and closes: an even number of ``` and none inside a code block
            assert s.count("```") % 2 == 0
        for b in m.blocks:
            text = b.get("text")
            if isinstance(text, dict) and text.get("type") == "mrkdwn":
                for inline in text["text"].split("```")[::2]:
                    assert inline.count("`") % 2 == 0  # inline code spans are balanced: no stray backtick


def test_limits_on_long_and_many_things() -> None:
    """Huge evidence, many fixes and a huge raw message stay within 50 blocks and 3000 characters a section."""
    d = replace(
        DIAGNOSIS,
        summary="s" * 5000,
        evidence=tuple(Evidence("e&" * 300, "cluster", True) for _ in range(40)),
        fixes=tuple(FixCommand(f"fix {i}", "x" * 4000) for i in range(80)),
        raw_message="r" * 10_000,
        actions=tuple(ActionKind),
    )
    m = render.render_diagnosis(incident(), d)
    assert len(m.blocks) <= render.MAX_BLOCKS
    assert m.blocks[-1]["type"] == "actions"  # the buttons survive the cut
    for s in sections(m):
        assert len(s) <= render.MAX_SECTION
        assert not s.rstrip("…").endswith("&")  # never cut inside an entity
    assert len(m.text) <= render.MAX_FALLBACK
    assert any("more blocks left out" in s for s in (all_text(m),))


def test_button_value_respects_slack_limit() -> None:
    """An incident key too long for a button value drops the buttons rather than sending invalid blocks."""
    m = render.render_diagnosis(incident("k" * 2500), DIAGNOSIS)
    assert not [b for b in m.blocks if b["type"] == "actions"]
    assert render.button_value("short") == '{"incident":"short"}'


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0, "0s"), (42, "42s"), (252, "4m12s"), (7500, "2h05m"), (273600, "3d04h")]
)
def test_format_duration(seconds: float, expected: str) -> None:
    """Durations read like 4m12s."""
    assert render.format_duration(seconds) == expected


@given(st.text(max_size=4000))
def test_escape_and_truncate_never_leave_markup(text: str) -> None:
    """Any text, escaped and cut, holds no raw angle bracket and fits the limit."""
    escaped = render.truncate(render.escape(text), 300)
    assert "<" not in escaped
    assert ">" not in escaped
    assert len(escaped) <= 300
    block = render.code_block(text, 500)
    assert len(block) <= 500
    assert block.count("```") == 2
