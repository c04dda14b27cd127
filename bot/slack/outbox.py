"""The outbox worker: sends the Slack writes stored in SQL, in order, at most once per thread, within rate limits.

Rows are claimed (leased) from the store in id order. The rows of one incident are sent strictly in order: a reply
or a parent update waits until the incident has a thread; a row that must be retried holds back the later rows of
its incident. Parents carry message metadata (`imagepull_incident`: incident key and outbox id), replies carry
`imagepull_reply`; a row that was attempted before is first RECONCILED against the channel history (or the thread's
replies), so a crash between Slack's answer and our commit never makes a second thread.

Pace: every send reserves a slot of its channel (and edits of the workspace-wide chat.update bucket) in the shared
database (`slack_pace`), so all replicas together keep Slack's pace of about one message per second per channel.

Errors: 429 pauses the channel for Retry-After; 5xx, timeouts and connection errors back off exponentially; Slack's
errors other than the few temporary ones (RETRYABLE_ERRORS) mark the row failed at once with the error code, a log
line saying what fixes it and a metric. Tokens never reach logs or rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.model import Incident, OutboxKind, OutboxMessage
from bot.slack.channels import ChannelDirectory
from bot.slack.render import render_parent

log = logging.getLogger(__name__)

PARENT_EVENT = "imagepull_incident"
# chat.update is not bound by the 1 message/s/channel posting limit but by its own workspace-wide Tier 3 limit
# (about 50 a minute): edits get their own bucket, so parent updates never delay new threads in a channel.
UPDATE_BUCKET = "chat.update"
UPDATE_RATE = 50 / 60
REPLY_EVENT = "imagepull_reply"

# chat.postMessage into a thread whose parent was deleted answers thread_not_found; chat.update of it
# message_not_found. Neither is final for the incident: it gets a new parent.
THREAD_GONE: frozenset[str] = frozenset({"thread_not_found", "message_not_found"})

# Slack's error codes a retry can cure (its method pages call them temporary: "try again later"); HTTP 429 and 5xx,
# timeouts and dropped connections are retried too. Every other `ok: false` answer (is_archived, is_inactive,
# restricted_action*, not_in_channel, invalid_auth, account_inactive, not_allowed_token_type, invalid_blocks, ...)
# would be refused again: the row fails at once, with a log line and `imagepull_slack_permanent_failures_total`.
RETRYABLE_ERRORS: frozenset[str] = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)

# What an operator does about a permanent error, by the error's family.
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("invalid_auth", "not_authed", "account_inactive", "token_", "not_allowed_token_type"), "check the bot token"),
    (("missing_scope", "no_permission", "ekm_access_denied"), "reinstall the app with the manifest's scopes"),
    (
        ("is_archived", "is_inactive", "channel_not_found", "not_in_channel"),
        "check the channel and the bot's membership",
    ),
    (("restricted_action",), "the channel restricts who may post: allow the bot or route elsewhere"),
    (("invalid_", "msg_too_long", "no_text", "too_many", "metadata"), "a bug in the message: report it"),
)


def permanent_hint(error: str) -> str:
    """One line on what fixes a permanent Slack error."""
    return next((hint for prefixes, hint in _HINTS if error.startswith(prefixes)), "see Slack's error reference")


class OutboxStore(Protocol):
    """The part of `bot.store.Store` the worker uses."""

    async def claim_outbox(self, limit: int, worker_id: str, lease_s: float) -> list[OutboxMessage]: ...

    async def get_incident(self, key: str) -> Incident | None: ...

    async def set_thread(self, incident_key: str, channel: str, ts: str) -> object: ...

    async def mark_outbox_sent(self, outbox_id: int, ts: str | None) -> object: ...

    async def mark_outbox_retry(self, outbox_id: int, not_before: datetime, error: str) -> object: ...

    async def mark_outbox_failed(self, outbox_id: int, error: str) -> object: ...

    async def outbox_attempts(self, outbox_id: int) -> int | None: ...

    async def reserve_slack_slot(self, bucket: str, interval_s: float, burst: int) -> float: ...


class ChannelPacer:
    """Per-channel pauses for Retry-After, and the pace settings (`rate` messages/s, bursts of `burst`); the pace
    itself is reserved in the shared store (`acquire` is a local token bucket for callers without one)."""

    def __init__(self, rate: float | None = 1.0, burst: int = 4, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._stamp: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def pause(self, channel: str, seconds: float) -> None:
        """Send nothing to `channel` for `seconds` (Slack's Retry-After)."""
        self._paused[channel] = max(self._paused.get(channel, 0.0), self._clock() + seconds)

    def paused_for(self, channel: str) -> float:
        """Seconds left in a pause of `channel` (0 when not paused)."""
        return max(0.0, self._paused.get(channel, 0.0) - self._clock())

    async def wait_pause(self, channel: str) -> None:
        """Wait until a Retry-After pause of `channel` is over."""
        while (wait := self.paused_for(channel)) > 0:  # noqa: ASYNC110 - a pause can grow while we sleep
            await asyncio.sleep(wait)

    async def acquire(self, channel: str) -> None:
        """Wait for the channel's pause to end and for a token."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            await self.wait_pause(channel)
            if not self.rate:
                return
            now = self._clock()
            tokens = self._tokens.get(channel, float(self.burst))
            tokens = min(float(self.burst), tokens + (now - self._stamp.get(channel, now)) * self.rate)
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / self.rate)
                now = self._clock()
                tokens = 1.0
            self._tokens[channel] = tokens - 1.0
            self._stamp[channel] = now


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: Literal["sent", "retry", "failed", "wait"]
    delay: float = 0.0  # retry / wait: seconds before the row is due again
    error: str = ""


_SENT = _Outcome("sent")


def _without_auto_retry(client: AsyncWebClient) -> AsyncWebClient:
    """A shallow copy of `client` without retry handlers: the SDK would silently re-POST a message after a
    dropped connection (a second thread); the worker retries itself, after reconciling."""
    clone = copy.copy(client)
    clone.retry_handlers = []
    return clone


def _metadata(event: str, incident_key: str, outbox_id: int) -> dict[str, Any]:
    return {"event_type": event, "event_payload": {"incident_key": incident_key, "outbox_id": outbox_id}}


def _slack_error(exc: SlackApiError) -> tuple[int, str]:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error", "")) if isinstance(data, Mapping) else ""
    return status, error or f"http_{status}"


def _retry_after(exc: SlackApiError, default: float = 1.0) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else default
    except (TypeError, ValueError):
        return default


class OutboxWorker:
    """Sends pending outbox rows to Slack; see the module docstring for the rules."""

    def __init__(
        self,
        store: OutboxStore,
        client: AsyncWebClient,
        *,
        worker_id: str,
        poll_interval: float = 0.2,
        max_attempts: int = 8,
        bot_user_id: str | None = None,
        rate_per_channel: float | None = 1.0,
        burst: int = 4,
        update_rate: float | None = UPDATE_RATE,
        batch_size: int = 50,
        lease_s: float = 60.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        wait_parent_s: float = 0.3,
        reconcile_pages: int = 3,
        concurrency: int = 8,
        channels: ChannelDirectory | None = None,
    ) -> None:
        self._store = store
        self._client = _without_auto_retry(client)
        # Rows may name a channel ("#alerts"); Slack's history and replies need its ID, and pacing is per ID.
        self.channels = channels or ChannelDirectory(self._client)
        self.worker_id = worker_id
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.bot_user_id = bot_user_id
        self.pacer = ChannelPacer(rate_per_channel, burst)
        self.update_pacer = ChannelPacer(update_rate if rate_per_channel is not None else None, burst)
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.wait_parent_s = wait_parent_s
        self.reconcile_pages = reconcile_pages
        # True when claim_outbox itself counts the attempt (attempts > 1 then means "tried before").
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._wake = asyncio.Event()
        self._due_at: dict[int, float] = {}  # rows this worker put back, and when (monotonic) they are due
        self._blocked: dict[str, tuple[int, float]] = {}  # incident -> (earliest unsent row id, due at)
        self._ambiguous: set[int] = set()  # rows whose send may have reached Slack without an answer
        self._scanned: dict[str, dict[tuple[str, int], str]] = {}  # channel -> our parents in its history
        self.sent = 0
        self.retries = 0
        self.failures = 0
        self.reconciled = 0
        self.rate_limited = 0
        self.reposted = 0  # new parents posted because the old one was deleted
        self.permanent: dict[str, int] = {}  # Slack error code -> rows failed at once with it

    # ---- loop ----

    def notify(self) -> None:
        """Wake the loop now (new rows were stored) instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Send due rows until cancelled; store errors are logged and retried after a pause."""
        failures = 0
        while True:
            try:
                handled = await self.send_due()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("outbox pass failed (worker %s)", self.worker_id)
                handled = 0
                await asyncio.sleep(min(30.0, self.poll_interval * 2**failures))
            if handled == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_sleep())

    def _idle_sleep(self) -> float:
        if not self._due_at:
            return self.poll_interval
        return max(0.01, min(self.poll_interval, min(self._due_at.values()) - time.monotonic()))

    async def drain(self, timeout: float = 30.0) -> int:
        """Send until nothing is due and no row this worker put back is waiting; return rows sent.

        Raises TimeoutError when work is still outstanding after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        before = self.sent
        while True:
            handled = await self.send_due()
            if handled:
                continue
            if not self._due_at:
                return self.sent - before
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"outbox not drained after {timeout}s: {len(self._due_at)} rows waiting")
            await asyncio.sleep(max(0.01, min(min(self._due_at.values()) - now, deadline - now, 0.25)))

    async def send_due(self) -> int:
        """Claim due rows once and send them; return how many rows were handled."""
        rows = await self._store.claim_outbox(self.batch_size, self.worker_id, self.lease_s)
        if not rows:
            return 0
        groups: dict[str, list[OutboxMessage]] = {}
        for row in sorted(rows, key=lambda r: r.id or 0):
            groups.setdefault(row.incident_key or f"#row{row.id}", []).append(row)
        await asyncio.gather(*(self._send_group(key, group) for key, group in groups.items()))
        return len(rows)

    # ---- one incident ----

    async def _send_group(self, key: str, rows: list[OutboxMessage]) -> None:
        async with self._sem:
            incident = await self._store.get_incident(key) if not key.startswith("#row") else None
            last_update = max((i for i, r in enumerate(rows) if r.kind is OutboxKind.UPDATE_PARENT), default=-1)
            for i, row in enumerate(rows):
                row_id = _id(row)
                blocker = self._blocked.get(key)
                if blocker is not None and blocker[0] < row_id and time.monotonic() < blocker[1] + self.lease_s:
                    await self._hold(row, max(0.05, blocker[1] - time.monotonic()), f"after row {blocker[0]}")
                    continue
                superseded = row.kind is OutboxKind.UPDATE_PARENT and i < last_update
                try:
                    outcome, incident = await self._send_one(row, incident, superseded)
                except Exception as exc:  # a bug or an unexpected client error: retry, but say what it was
                    log.exception("outbox row %s (%s) raised", row_id, row.kind.value)
                    outcome = _Outcome("retry", error=type(exc).__name__)
                due = await self._settle(row, outcome)
                if due is not None:
                    self._blocked[key] = (row_id, due)
                elif key in self._blocked and self._blocked[key][0] == row_id:
                    del self._blocked[key]

    async def _hold(self, row: OutboxMessage, delay: float, why: str) -> None:
        row_id = _id(row)
        await self._store.mark_outbox_retry(row_id, _utc_in(delay), f"waiting: {why}")
        self._due_at[row_id] = time.monotonic() + delay

    async def _settle(self, row: OutboxMessage, outcome: _Outcome) -> float | None:
        """Record the outcome in the store; return when the row is due again (monotonic), None when done."""
        row_id = _id(row)
        if outcome.status == "sent":
            self._due_at.pop(row_id, None)
            self._ambiguous.discard(row_id)
            return None
        if outcome.status == "failed":
            self.failures += 1
            self._due_at.pop(row_id, None)
            self._ambiguous.discard(row_id)
            log.error(
                "outbox row %s (%s, incident %s) failed: %s", row_id, row.kind.value, row.incident_key, outcome.error
            )
            await self._store.mark_outbox_failed(row_id, outcome.error)
            return None
        delay = outcome.delay
        attempts = await self._store.outbox_attempts(row_id) or 0
        if outcome.status == "wait" and attempts >= self.max_attempts * 4:
            return await self._settle(row, _Outcome("failed", error="parent_not_posted"))
        if outcome.status == "retry":
            if attempts >= self.max_attempts and outcome.error != "ratelimited":
                return await self._settle(row, _Outcome("failed", error=f"{outcome.error} (after {attempts} attempts)"))
            self.retries += 1
            if delay <= 0:
                delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempts - 1))
                delay *= random.uniform(0.5, 1.0)
            log.warning("outbox row %s (%s) retry in %.2fs: %s", row_id, row.kind.value, delay, outcome.error)
        await self._store.mark_outbox_retry(row_id, _utc_in(delay), outcome.error or "waiting for the parent")
        self._due_at[row_id] = due = time.monotonic() + delay
        return due

    async def _tried_before(self, row_id: int) -> bool:
        if row_id in self._ambiguous:
            return True
        attempts = await self._store.outbox_attempts(row_id) or 0
        return attempts > 0

    async def _send_one(
        self, row: OutboxMessage, incident: Incident | None, superseded: bool
    ) -> tuple[_Outcome, Incident | None]:
        row_id = _id(row)
        try:
            if row.kind is OutboxKind.POST_PARENT:
                return await self._post_parent(row, incident)
            if row.kind is OutboxKind.EPHEMERAL:
                return await self._post_ephemeral(row), incident
            if incident is None:
                return _Outcome("failed", error="incident_not_found"), incident
            if incident.thread_ts is None:
                return _Outcome("wait", delay=self.wait_parent_s), incident
            channel = await self.channels.resolve(incident.channel or row.channel)
            try:
                return await self._to_thread(row, incident, channel, incident.thread_ts, superseded), incident
            except SlackApiError as exc:
                if _slack_error(exc)[1] not in THREAD_GONE:
                    raise
            # Someone deleted the thread's parent: start a new one that says so, and carry on there.
            return await self._repost_parent(row, incident, channel)
        except SlackApiError as exc:
            return self._classify(row, exc), incident
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The request may have reached Slack: reconcile before the next attempt.
            self._ambiguous.add(row_id)
            return _Outcome("retry", error=type(exc).__name__), incident

    async def _to_thread(
        self, row: OutboxMessage, incident: Incident, channel: str, thread_ts: str, superseded: bool
    ) -> _Outcome:
        row_id = _id(row)
        if row.kind is OutboxKind.UPDATE_PARENT:
            if superseded:
                await self._store.mark_outbox_sent(row_id, thread_ts)
                return _SENT
            await self._pace(UPDATE_BUCKET, update=True)
            await self._client.chat_update(
                channel=channel, ts=thread_ts, text=row.text, blocks=list(row.blocks) or None
            )
            await self._store.mark_outbox_sent(row_id, thread_ts)
            self.sent += 1
            return _SENT
        return await self._post_reply(row, incident, channel, thread_ts)

    async def _repost_parent(
        self, row: OutboxMessage, incident: Incident, channel: str
    ) -> tuple[_Outcome, Incident | None]:
        """The incident's parent is gone (deleted in Slack): post a new parent saying so, move the incident's thread
        there and send `row` into it. The new parent carries this row's id, so a lost answer is reconciled."""
        row_id = _id(row)
        log.warning(
            "incident %s: its thread parent %s in %s was deleted; starting a new thread",
            row.incident_key,
            incident.thread_ts,
            channel,
        )
        await self._scan_parents(channel)
        ts = self._scanned.get(channel, {}).get((row.incident_key, row_id))
        if ts is None:
            current = render_parent(incident)
            note = ":warning: The previous thread of this incident was deleted in Slack; it continues here."
            blocks: list[dict[str, Any]] = [{"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]
            blocks += [dict(b) for b in current.blocks]
            await self._pace(channel)
            response = await self._client.chat_postMessage(
                channel=channel,
                text=f"{current.text} (the previous thread was deleted)",
                blocks=blocks[:50],
                metadata=_metadata(PARENT_EVENT, row.incident_key, row_id),
                unfurl_links=False,
                unfurl_media=False,
            )
            ts = str(response["ts"])
            self.sent += 1
        self.reposted += 1
        await self._store.set_thread(row.incident_key, channel, ts)
        moved = replace(incident, channel=channel, thread_ts=ts)
        if row.kind is OutboxKind.UPDATE_PARENT:  # the new parent shows the incident as it is now
            await self._store.mark_outbox_sent(row_id, ts)
            return _SENT, moved
        return await self._post_reply(row, moved, channel, ts), moved

    async def _pace(self, bucket: str, *, update: bool = False) -> None:
        """Wait for Slack's pace of `bucket` (a channel ID, or chat.update's workspace-wide bucket).

        The pace is reserved in the shared database, so N replicas together send at Slack's pace, not N times it;
        a Retry-After pause is kept by the worker that received it."""
        local = self.update_pacer if update else self.pacer
        if not local.rate:
            await local.wait_pause(bucket)
            return
        await local.wait_pause(bucket)
        delay = await self._store.reserve_slack_slot(bucket, 1.0 / local.rate, local.burst)
        if delay > 0:
            await asyncio.sleep(delay)

    def _classify(self, row: OutboxMessage, exc: SlackApiError) -> _Outcome:
        status, error = _slack_error(exc)
        if status == 429 or error == "ratelimited":
            seconds = _retry_after(exc)
            self.rate_limited += 1
            if row.kind is OutboxKind.UPDATE_PARENT:
                self.update_pacer.pause(UPDATE_BUCKET, seconds)
            else:
                self.pacer.pause(self.channels.id_of(row.channel), seconds)
            return _Outcome("retry", delay=seconds, error="ratelimited")
        if status >= 500 or status == 0:
            self._ambiguous.add(_id(row))
            return _Outcome("retry", error=error)
        if error in RETRYABLE_ERRORS:
            return _Outcome("retry", error=error)
        self.permanent[error] = self.permanent.get(error, 0) + 1
        log.error(
            "outbox row %s (%s, incident %s): Slack refused with %s, which no retry can change; %s",
            _id(row),
            row.kind.value,
            row.incident_key,
            error,
            permanent_hint(error),
        )
        return _Outcome("failed", error=error)

    async def _post_parent(self, row: OutboxMessage, incident: Incident | None) -> tuple[_Outcome, Incident | None]:
        row_id = _id(row)
        if incident is not None and incident.thread_ts is not None:
            # Already posted (by an earlier row or an adopted reconcile): never a second thread.
            await self._store.mark_outbox_sent(row_id, incident.thread_ts)
            return _SENT, incident
        channel = (incident.channel if incident is not None and incident.channel else "") or row.channel
        channel = await self.channels.resolve(channel)
        # A row tried before may have reached Slack: look for it. A row a worker died with counts an attempt when it
        # is claimed again (its lease ran out) or released (the same identity restarted), so a row with none has
        # never been sent. Every replica's worker used to scan each channel once after start as well: with many
        # clusters on one database and one Slack app, that was bots x channels history reads against Tier 3.
        if await self._tried_before(row_id):
            await self._scan_parents(channel)
        ts = self._scanned.get(channel, {}).get((row.incident_key, row_id))
        if ts is not None:
            log.info("outbox row %s: adopted parent ts %s found by reconcile", row_id, ts)
            self.reconciled += 1
            return await self._adopt(row, incident, channel, ts), _with_thread(incident, channel, ts)
        await self._pace(channel)
        response = await self._client.chat_postMessage(
            channel=channel,
            text=row.text,
            blocks=list(row.blocks) or None,
            metadata=_metadata(PARENT_EVENT, row.incident_key, row_id),
            unfurl_links=False,
            unfurl_media=False,
        )
        ts, posted_channel = str(response["ts"]), str(response.get("channel") or channel)
        self.sent += 1
        return await self._adopt(row, incident, posted_channel, ts), _with_thread(incident, posted_channel, ts)

    async def _adopt(self, row: OutboxMessage, incident: Incident | None, channel: str, ts: str) -> _Outcome:
        # mark_outbox_sent records the thread under the row's channel; set_thread after it keeps the channel id
        # Slack answered with (chat.update needs the id, not a "#name").
        await self._store.mark_outbox_sent(_id(row), ts)
        await self._store.set_thread(row.incident_key, channel, ts)
        return _SENT

    async def _post_reply(self, row: OutboxMessage, incident: Incident, channel: str, thread_ts: str) -> _Outcome:
        row_id = _id(row)
        if await self._tried_before(row_id):
            ts = await self._find_reply(channel, thread_ts, row_id)
            if ts is not None:
                log.info("outbox row %s: reply already in the thread (ts %s)", row_id, ts)
                self.reconciled += 1
                await self._store.mark_outbox_sent(row_id, ts)
                return _SENT
        await self._pace(channel)
        response = await self._client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=row.text,
            blocks=list(row.blocks) or None,
            metadata=_metadata(REPLY_EVENT, row.incident_key, row_id),
            unfurl_links=False,
            unfurl_media=False,
        )
        await self._store.mark_outbox_sent(row_id, str(response["ts"]))
        self.sent += 1
        return _SENT

    async def _post_ephemeral(self, row: OutboxMessage) -> _Outcome:
        if not row.user:
            return _Outcome("failed", error="no_user")
        channel = await self.channels.resolve(row.channel)
        await self._pace(channel)
        response = await self._client.chat_postEphemeral(
            channel=channel, user=row.user, text=row.text, blocks=list(row.blocks) or None
        )
        await self._store.mark_outbox_sent(_id(row), str(response.get("message_ts") or ""))
        self.sent += 1
        return _SENT

    # ---- reconcile ----

    async def _scan_parents(self, channel: str) -> None:
        """Index our parents in the last few pages of the channel by (incident key, outbox id)."""
        found: dict[tuple[str, int], str] = {}
        cursor: str | None = None
        for _ in range(self.reconcile_pages):
            try:
                page = await self._client.conversations_history(
                    channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                status, error = _slack_error(exc)
                if status == 429 or status >= 500:
                    raise
                # Without history access (scope, membership) reconcile cannot help: post, and say so.
                log.warning("reconcile in %s skipped: conversations.history said %s", channel, error)
                break
            for message in page.get("messages") or []:
                payload = self._our_payload(message, PARENT_EVENT)
                if payload is not None:
                    found[(str(payload.get("incident_key")), _int(payload.get("outbox_id")))] = str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        self._scanned[channel] = found

    def _our_payload(self, message: Mapping[str, Any], event: str) -> Mapping[str, Any] | None:
        if self.bot_user_id is not None and message.get("user") not in {None, self.bot_user_id}:
            return None
        meta = message.get("metadata")
        if not isinstance(meta, Mapping) or meta.get("event_type") != event:
            return None
        payload = meta.get("event_payload")
        return payload if isinstance(payload, Mapping) else None

    async def _find_reply(self, channel: str, thread_ts: str, outbox_id: int) -> str | None:
        cursor: str | None = None
        for _ in range(self.reconcile_pages * 5):
            try:
                page = await self._client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                status, error = _slack_error(exc)
                if status == 429 or status >= 500:
                    raise
                log.warning("reconcile of row %s skipped: conversations.replies said %s", outbox_id, error)
                return None
            for message in page.get("messages") or []:
                payload = self._our_payload(message, REPLY_EVENT)
                if payload is not None and _int(payload.get("outbox_id")) == outbox_id:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None


def _id(row: OutboxMessage) -> int:
    if row.id is None:
        raise ValueError("outbox row without id")
    return row.id


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return -1


def _utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _with_thread(incident: Incident | None, channel: str, ts: str) -> Incident | None:
    if incident is None:
        return None
    return replace(incident, channel=channel, thread_ts=ts)
