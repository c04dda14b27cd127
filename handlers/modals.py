"""The recreate-secret and link-secret modals: building them, and their submissions.

The modal's private_metadata carries only names (cluster, namespace, incident key, channel), never a credential;
typed credentials go from the submission straight to the flow, which probes the registry with them and keeps them
in memory (see bot/flows/). Slack has no password input: the modal is private to the user, and the bot never
echoes, logs or stores what was typed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.chatops.grammar import Command, Verb, is_cluster_name, is_label, is_subdomain
from bot.chatops.port import Actor, FlowsPort, Reply, SecretDefaults, Where
from bot.slack.render import ACTION_PREFIX, escape, plain
from handlers.answer import actor_of, answer

log = logging.getLogger(__name__)

RECREATE_CALLBACK = f"{ACTION_PREFIX}recreate_secret"
LINK_CALLBACK = f"{ACTION_PREFIX}link_secret"

_SECRET_NAME_HINT = "A secret name: lowercase letters, digits, '-' and '.'."  # noqa: S105 (a hint, not a password)


def _input(block_id: str, label: str, *, initial: str = "", hint: str = "", optional: bool = True) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value"}
    if initial:
        element["initial_value"] = plain(initial, 2000)
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": element,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _metadata(defaults: SecretDefaults, channel: str, response_url: str | None) -> str:
    data: dict[str, Any] = {
        "cluster": defaults.cluster,
        "namespace": defaults.namespace,
        "incident": defaults.incident,
        "channel": channel,
    }
    if response_url:  # the answer to the submission goes there (a view submission carries no response_url)
        data["response_url"] = response_url
    return json.dumps(data, separators=(",", ":"))


def response_url_in(view: dict[str, Any]) -> str | None:
    """The response_url of the command or click that opened this view, kept in its private_metadata."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        return None
    url = meta.get("response_url") if isinstance(meta, dict) else None
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def loading_view(title: str, what: str = "Reading the incident, the pod and its secrets…") -> dict[str, Any]:
    """The modal opened at once (a trigger_id expires after 3 seconds); `views.update` replaces it."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":hourglass_flowing_sand: {what}"}}],
    }


def message_view(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (the form could not be built)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


async def open_form(
    client: AsyncWebClient, trigger_id: object, title: str, build: Callable[[], Awaitable[dict[str, Any] | str]]
) -> None:
    """Open a loading modal with `trigger_id` at once (Slack expires it after 3 seconds), then build the real form
    (database and Kubernetes reads may take longer) and put it in place with views.update; a text from `build`
    is shown instead of a form."""
    opened = await client.views_open(trigger_id=str(trigger_id or ""), view=loading_view(title))
    view = opened["view"]
    built = await build()
    final = built if isinstance(built, dict) else message_view(title, built)
    await client.views_update(view_id=view["id"], hash=view.get("hash"), view=final)


RECREATE_TITLE = "Recreate pull secret"
LINK_TITLE = "Link pull secret"


def recreate_secret_view(defaults: SecretDefaults, channel: str, response_url: str | None = None) -> dict[str, Any]:
    """The recreate-pull-secret modal: copy from a secret, or type registry credentials (held in memory only)."""
    intro = (
        f"Recreate a pull secret in namespace `{escape(defaults.namespace)}` on cluster `{escape(defaults.cluster)}`."
        " Either copy an existing secret, or type registry credentials: the bot tests them against the registry,"
        " never stores them (memory only, until the proposal is approved) and never shows them."
    )
    return _proposal_modal(
        RECREATE_CALLBACK,
        RECREATE_TITLE,
        _metadata(defaults, channel, response_url),
        intro,
        _input("secret", "Secret to (re)create", initial=defaults.secret, optional=False),
        _input("source", "Copy from (namespace/secret)", initial=defaults.source, hint="Leave empty to type"),
        _input("server", "Registry server", initial=defaults.server, hint="host or host:port"),
        _input("username", "Username"),
        _input("password", "Password or token", hint="Tested against the registry, kept in memory only"),
        _input("image", "Image to test with", initial=defaults.image),
    )


def link_secret_view(defaults: SecretDefaults, channel: str, response_url: str | None = None) -> dict[str, Any]:
    """The link-secret modal: which ServiceAccount gets which pull secret."""
    intro = f"Add a pull secret to a ServiceAccount in `{escape(defaults.namespace)}` on `{escape(defaults.cluster)}`."
    return _proposal_modal(
        LINK_CALLBACK,
        LINK_TITLE,
        _metadata(defaults, channel, response_url),
        intro,
        _input("serviceaccount", "ServiceAccount", initial=defaults.serviceaccount or "default", optional=False),
        _input("secret", "Pull secret", initial=defaults.secret, optional=False),
    )


def _proposal_modal(callback_id: str, title: str, metadata: str, intro: str, *inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Propose"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": intro}}, *inputs],
    }


def values(view: dict[str, Any]) -> dict[str, str]:
    """block_id -> typed text of a submitted view (empty string for empty inputs)."""
    out: dict[str, str] = {}
    state = ((view.get("state") or {}).get("values")) or {}
    for block_id, actions in state.items():
        if isinstance(actions, dict):
            value = (actions.get("value") or {}).get("value")
            out[str(block_id)] = str(value or "").strip()
    return out


class BadMetadata(ValueError):
    """private_metadata that does not hold valid names."""


def metadata_of(view: dict[str, Any]) -> tuple[SecretDefaults, str]:
    """Defaults and channel from a submitted view's private_metadata, validated."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        raise BadMetadata("unreadable form") from None
    if not isinstance(meta, dict):
        raise BadMetadata("unreadable form")
    cluster, namespace = str(meta.get("cluster") or ""), str(meta.get("namespace") or "")
    incident = meta.get("incident")
    channel = str(meta.get("channel") or "")
    if not is_cluster_name(cluster) or (namespace and not is_label(namespace)):
        raise BadMetadata("the form names an invalid cluster or namespace")
    return SecretDefaults(cluster, namespace, incident=str(incident) if incident else None), channel


async def _metadata_or_refuse(
    view: dict[str, Any], ack: Any, flows: FlowsPort, actor: Actor, field: str
) -> tuple[SecretDefaults, str] | None:
    """The form's defaults and channel; a form whose metadata is not valid names is refused (shown on `field`)
    and audited, and None is returned."""
    try:
        return metadata_of(view)
    except BadMetadata as exc:
        await ack(response_action="errors", errors={field: str(exc)})
        await flows.refuse_command(actor, f"malformed form: {exc}")
        return None


def register(app: Any, flows: FlowsPort) -> None:
    """Attach the two view_submission listeners."""

    async def recreate_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        actor = actor_of(body)
        meta = await _metadata_or_refuse(view, ack, flows, actor, "secret")
        if meta is None:
            return
        defaults, channel = meta
        typed = values(view)
        where = Where(channel)
        secret, source = typed.get("secret", ""), typed.get("source", "")
        if not defaults.namespace:
            await ack(response_action="errors", errors={"secret": "This form has no namespace."})
            await flows.refuse_command(actor, "malformed form: no namespace")
            return
        if source:
            errors = _copy_errors(secret, source, typed)
            if errors:
                await ack(response_action="errors", errors=errors)
                await flows.refuse_command(actor, _form_refusal("recreate-secret form", errors))
                return
            await ack()
            src_ns, _, src = source.partition("/")
            cmd = Command(
                Verb.RECREATE_SECRET,
                namespace=defaults.namespace,
                name=secret,
                source_namespace=src_ns,
                source_name=src,
                cluster=defaults.cluster,
                incident=defaults.incident,
            )
            copied = await flows.command(cmd, actor, where)
            await answer(client, where, actor, copied, response_url=response_url_in(view))
            return
        form = {field: typed.get(field, "") for field in ("server", "username", "password", "image")}
        errors = flows.credential_form_errors(defaults, secret=secret, **form)
        if errors:
            await ack(response_action="errors", errors=errors)
            await flows.refuse_command(actor, _form_refusal("recreate-secret form", errors))
            return
        await ack()
        outcome = await flows.propose_credentials(defaults, secret=secret, actor=actor, where=where, **form)
        reply = outcome.reply
        if outcome.errors:
            reply = Reply(text=":no_entry: " + escape(" ".join(outcome.errors.values())), ok=False)
        if reply is not None:
            await answer(client, where, actor, reply, response_url=response_url_in(view))

    async def link_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        actor = actor_of(body)
        meta = await _metadata_or_refuse(view, ack, flows, actor, "serviceaccount")
        if meta is None:
            return
        defaults, channel = meta
        typed = values(view)
        sa, secret = typed.get("serviceaccount", ""), typed.get("secret", "")
        errors: dict[str, str] = {}
        if not is_subdomain(sa):
            errors["serviceaccount"] = "A ServiceAccount name: lowercase letters, digits, '-' and '.'."
        if not is_subdomain(secret):
            errors["secret"] = _SECRET_NAME_HINT
        if errors or not defaults.namespace:
            await ack(response_action="errors", errors=errors or {"serviceaccount": "This form has no namespace."})
            await flows.refuse_command(actor, _form_refusal("link-secret form", errors or {"serviceaccount": "-"}))
            return
        await ack()
        where = Where(channel)
        cmd = Command(
            Verb.LINK_SECRET,
            namespace=defaults.namespace,
            name=sa,
            secret=secret,
            cluster=defaults.cluster,
            incident=defaults.incident,
        )
        reply = await flows.command(cmd, actor, where)
        await answer(client, where, actor, reply, response_url=response_url_in(view))

    app.view(RECREATE_CALLBACK)(recreate_submitted)
    app.view(LINK_CALLBACK)(link_submitted)


def _form_refusal(form: str, errors: dict[str, str]) -> str:
    """The audit reason of a refused form: which fields were wrong, never what was typed in them."""
    return f"{form}: invalid {', '.join(sorted(errors))}"


def _copy_errors(secret: str, source: str, typed: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not is_subdomain(secret):
        errors["secret"] = _SECRET_NAME_HINT
    src_ns, slash, src = source.partition("/")
    if not slash or not is_label(src_ns) or not is_subdomain(src):
        errors["source"] = "namespace/secret, in lowercase Kubernetes names."
    if typed.get("username") or typed.get("password"):
        errors["password"] = "Either copy from a secret or type credentials, not both."  # noqa: S105 (a field or verb name, not a password)
    return errors
