"""What handlers and flows exchange: who asks, where, the answer, and the flows' interface the handlers call.

Pure (no I/O, no client library), so that handlers depend on this contract and not on `bot.flows`, which talks
to SQL, Kubernetes and registries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.chatops.grammar import Command
from bot.model import ActionKind
from bot.slack.render import MAX_SECTION, MAX_TEXT, truncate

Block = dict[str, object]


@dataclass(frozen=True, slots=True)
class Actor:
    """The Slack user behind a request."""

    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Where:
    """Where a request came from: the channel, and the thread of the clicked message if any."""

    channel: str
    thread_ts: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The ephemeral answer to the user; `ok` is False for refusals and errors."""

    text: str
    blocks: tuple[Block, ...] = ()
    ok: bool = True
    replace_original: str | None = None  # approvals: the clicked message's new text (buttons removed)

    def __post_init__(self) -> None:
        # Slack refuses (or silently cuts) a message text over 40,000 characters; every reply is cut before.
        object.__setattr__(self, "text", truncate(self.text, MAX_TEXT))
        if self.replace_original is not None:
            object.__setattr__(self, "replace_original", truncate(self.replace_original, MAX_TEXT))


@dataclass(frozen=True, slots=True)
class SecretDefaults:
    """Pre-filled values of the recreate-secret and link-secret modals (no secret value ever)."""

    cluster: str
    namespace: str
    secret: str = ""
    server: str = ""
    image: str = ""
    serviceaccount: str = ""
    incident: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Submitted:
    """A modal submission's outcome: field errors keep the modal open; otherwise a reply for the user."""

    errors: dict[str, str] | None = None
    reply: Reply | None = None


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def notice(text: str, *, ok: bool = True) -> Reply:
    """A reply from already-escaped mrkdwn text."""
    return Reply(text=text, blocks=(section(text),), ok=ok)


class FlowsPort(Protocol):
    """The flows as the handlers use them (implemented by `bot.flows.Flows`)."""

    async def command(self, cmd: Command, actor: Actor, where: Where) -> Reply: ...

    async def first_delivery(self, key: str, ttl_s: float) -> bool: ...

    async def refuse_command(self, actor: Actor, reason: str) -> None: ...

    async def button(self, kind: ActionKind, incident_key: str, actor: Actor, where: Where) -> Reply: ...

    async def secret_defaults(self, incident_key: str | None, cmd: Command | None = None) -> SecretDefaults: ...

    async def approve(self, proposal_id: int, actor: Actor) -> Reply: ...

    async def home(self, actor: Actor) -> dict[str, object]: ...

    async def reject(self, proposal_id: int, actor: Actor) -> Reply: ...

    def credential_form_errors(
        self, defaults: SecretDefaults, *, secret: str, server: str, username: str, password: str, image: str
    ) -> dict[str, str]: ...

    async def propose_credentials(
        self,
        defaults: SecretDefaults,
        *,
        secret: str,
        server: str,
        username: str,
        password: str,
        image: str,
        actor: Actor,
        where: Where,
    ) -> Submitted: ...
