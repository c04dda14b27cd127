"""The Slack app manifest: a valid shape, and bot scopes that cover every Web API method the code calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "slack" / "manifest.yaml"

# Web API method (as an AsyncWebClient attribute) -> bot scopes, any one of which allows it.
# Methods that need no scope map to an empty set. A method missing here fails the test: add it with its scope.
SCOPES: dict[str, set[str]] = {
    "auth_test": set(),
    "api_test": set(),
    "apps_connections_open": set(),  # app-level token (connections:write), not a bot scope
    "chat_postMessage": {"chat:write"},
    "chat_update": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_delete": {"chat:write"},
    "chat_getPermalink": set(),
    "conversations_history": {"channels:history", "groups:history"},
    "conversations_replies": {"channels:history", "groups:history"},
    "conversations_open": {"im:write"},
    "conversations_list": {"channels:read", "groups:read"},
    "conversations_info": {"channels:read", "groups:read"},
    "conversations_join": {"channels:join"},
    "views_open": set(),
    "views_update": set(),
    "views_push": set(),
    "views_publish": set(),  # the Home tab (no scope: api.slack.com/methods/views.publish)
    "users_info": {"users:read"},
    "usergroups_users_list": {"usergroups:read"},
    "usergroups_list": {"usergroups:read"},
}


def load() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, dict)
    return data


def called_methods() -> set[str]:
    """Names of AsyncWebClient methods called anywhere in bot/ and handlers/."""
    names = {n for n in dir(AsyncWebClient) if re.fullmatch(r"[a-z]+_[a-zA-Z_]+", n) and n not in {"api_call"}}
    pattern = re.compile(r"\.(" + "|".join(sorted(names, key=len, reverse=True)) + r")\(")
    found: set[str] = set()
    for folder in (ROOT / "bot", ROOT / "handlers"):
        for path in folder.rglob("*.py") if folder.exists() else ():
            text = path.read_text()
            found.update(pattern.findall(text))
            # methods named as Slack spells them (api_call("usergroups.users.list", ...) and its helpers)
            spelled = {m.replace(".", "_") for m in re.findall(r'"([a-z]+\.[a-zA-Z]+(?:\.[a-zA-Z]+)?)"', text)}
            found.update(spelled & names)
    return found


def test_manifest_shape() -> None:
    """Display name, the /imagepull command, interactivity and Socket Mode on, no org-wide deploy."""
    data = load()
    assert data["display_information"]["name"] == "imagepull-doctor"
    commands = {c["command"]: c for c in data["features"]["slash_commands"]}
    assert commands["/imagepull"]["description"]
    assert commands["/imagepull"]["usage_hint"]
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert data["settings"]["socket_mode_enabled"] is True
    assert data["settings"]["org_deploy_enabled"] is False
    assert len(data["display_information"]["description"]) <= 140


def test_scopes_cover_the_methods_the_bot_calls() -> None:
    """Every Web API method called in the code is known here and allowed by a manifest scope."""
    scopes = set(load()["oauth_config"]["scopes"]["bot"])
    methods = called_methods()
    assert {"chat_postMessage", "chat_update", "conversations_history"} <= methods  # the scan finds the outbox
    unknown = methods - SCOPES.keys()
    assert not unknown, f"add these methods and their scopes to SCOPES: {sorted(unknown)}"
    missing = {m: SCOPES[m] for m in methods if SCOPES[m] and not SCOPES[m] & scopes}
    assert not missing, f"the manifest lacks a scope for: {missing}"
    assert {"commands", "chat:write"} <= scopes


# Scopes no Web API method of the bot needs but the app does: the slash command, and posting to public channels
# the bot has not joined yet (start-up joins them, or reports them when it cannot).
NOT_FOR_A_METHOD = {
    "commands": "/imagepull",
    "chat:write.public": "post before joining a public channel",
    "users:read.email": "users.info returns profile.email only with it (Slack users as Kubernetes identities)",
}


def test_manifest_asks_for_no_scope_the_bot_does_not_use() -> None:
    """Least privilege: every bot scope is needed by a method the code calls (or is listed above with why)."""
    scopes = set(load()["oauth_config"]["scopes"]["bot"])
    used: set[str] = set(NOT_FOR_A_METHOD)
    for method in called_methods():
        used |= SCOPES.get(method, set())
    assert scopes <= used, f"unused scopes in the manifest: {sorted(scopes - used)}"
    # public and private alert channels: both halves of the read and history scopes
    assert {"channels:read", "groups:read", "channels:history", "groups:history", "channels:join"} <= scopes
