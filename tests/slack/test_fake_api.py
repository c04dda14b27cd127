"""The fake Slack Web API with the real slack_sdk client: bodies, stored threads, metadata, fault knobs."""

from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import render
from testkit.slack.terminal import render_threads
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import incident


async def test_json_and_form_bodies_and_threads(fake: FakeSlackApi, client: AsyncWebClient) -> None:
    """chat.postMessage (JSON) and auth.test (form) work; threads group replies under their parent."""
    auth = await client.auth_test()
    assert auth["user_id"] == fake.bot_user_id
    parent = await client.chat_postMessage(
        channel="C1", text="parent", metadata={"event_type": "e", "event_payload": {}}
    )
    await client.chat_postMessage(channel="C1", text="reply", thread_ts=parent["ts"])
    await client.chat_postMessage(channel="C2", text="other")
    await client.chat_update(channel="C1", ts=parent["ts"], text="parent v2")
    threads = fake.threads("C1")
    assert [(t.parent.text, [r.text for r in t.replies]) for t in threads] == [("parent v2", ["reply"])]
    assert len(fake.threads()) == 2
    assert [c.method for c in fake.calls] == [
        "auth.test",
        "chat.postMessage",
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
    ]
    assert all("token" not in c.payload for c in fake.calls)


async def test_history_and_replies_return_metadata_and_page(fake: FakeSlackApi, client: AsyncWebClient) -> None:
    """conversations.history pages newest first and carries metadata only when asked for it."""
    for i in range(5):
        await client.chat_postMessage(
            channel="C1", text=f"m{i}", metadata={"event_type": "e", "event_payload": {"i": i}}
        )
    page = await client.conversations_history(channel="C1", limit=2, include_all_metadata=True)
    assert [m["text"] for m in page["messages"]] == ["m4", "m3"]
    assert page["messages"][0]["metadata"]["event_payload"] == {"i": 4}
    nxt = await client.conversations_history(channel="C1", limit=2, cursor=page["response_metadata"]["next_cursor"])
    assert [m["text"] for m in nxt["messages"]] == ["m2", "m1"]
    assert "metadata" not in nxt["messages"][0]
    replies = await client.conversations_replies(channel="C1", ts=page["messages"][0]["ts"], include_all_metadata=True)
    assert [m["text"] for m in replies["messages"]] == ["m4"]


async def test_fault_knobs(fake: FakeSlackApi, client: AsyncWebClient) -> None:
    """429 with Retry-After, HTTP 500 and ok:false errors reach the client as Slack's would."""
    fake.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel="C1", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    fake.server_error("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel="C1", text="x")
    assert failed.value.response.status_code == 503
    fake.fail("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C1", text="x")
    assert refused.value.response["error"] == "not_in_channel"
    assert fake.messages == []
    await client.chat_postMessage(channel="C1", text="fine")
    assert [m.text for m in fake.messages] == ["fine"]


async def test_crash_after_send_stores_the_message(fake: FakeSlackApi) -> None:
    """The message is stored though the answer fails (here by closing the connection)."""
    no_retry = AsyncWebClient(token=fake.token, base_url=fake.url, retry_handlers=[])
    fake.crash_after_send("chat.postMessage", mode="close")
    with pytest.raises(aiohttp.ClientError):
        await no_retry.chat_postMessage(channel="C1", text="lost answer")
    assert [m.text for m in fake.messages] == ["lost answer"]


async def test_wrong_token_is_refused(fake: FakeSlackApi) -> None:
    """A client with another token gets invalid_auth."""
    with pytest.raises(SlackApiError) as refused:
        await AsyncWebClient(token="xoxb-other", base_url=fake.url).auth_test()
    assert refused.value.response["error"] == "invalid_auth"


async def test_views_users_and_ephemerals(fake: FakeSlackApi, client: AsyncWebClient) -> None:
    """views.open stores the view, users.info answers, chat.postEphemeral is kept apart from channel messages."""
    opened = await client.views_open(
        trigger_id=fake.trigger_id(), view={"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    )
    assert opened["view"]["id"].startswith("V")
    assert fake.views[0]["type"] == "modal"
    user = await client.users_info(user="U42")
    assert user["user"]["id"] == "U42"
    await client.chat_postEphemeral(channel="C1", user="U42", text="psst")
    assert fake.messages == []
    assert fake.ephemerals[0].user == "U42"


async def test_terminal_rendering_of_a_recorded_thread(fake: FakeSlackApi, client: AsyncWebClient) -> None:
    """The demo's terminal view shows the parent, then indented replies with cause, evidence and fixes."""
    from tests.slack.test_render import DIAGNOSIS

    inc = incident(diagnosis=DIAGNOSIS)
    parent = render.render_parent(inc)
    sent = await client.chat_postMessage(channel="C1", text=parent.text, blocks=list(parent.blocks))
    reply = render.render_diagnosis(inc, DIAGNOSIS)
    await client.chat_postMessage(channel="C1", text=reply.text, blocks=list(reply.blocks), thread_ts=sent["ts"])
    out = render_threads(fake.threads())
    lines = out.splitlines()
    assert any(line.startswith("[OPEN] OPEN") for line in lines)
    assert "     Cause: `pull_secret_missing` Pull secret missing" in out or "pull_secret_missing" in out
    assert "     [!!] secret regcred exists _(cluster)_" in lines
    assert "     kubectl get secret regcred -n base -o yaml" in lines
    assert "     buttons: [Recreate pull secret] [Re-diagnose] [Snooze 1h]" in lines
