"""Registry authentication: parse the WWW-Authenticate challenge, make the Basic header, read a Bearer token."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from bot.model import Credentials

_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One WWW-Authenticate challenge: scheme in lower case ("basic", "bearer") and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header, or None when there is none."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(rest):
        value = m.group(2)
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(m.group(1).lower(), value)
    return Challenge(scheme.lower(), params)


def pull_scope(repository: str) -> str:
    """The token scope that lets a client pull `repository`."""
    return f"repository:{repository}:pull"


def token_query(challenge: Challenge, repository: str) -> dict[str, str]:
    """Query parameters for the token endpoint of a Bearer challenge."""
    query = {"scope": pull_scope(repository)}
    service = challenge.params.get("service")
    if service:
        query["service"] = service
    return query


def basic_header(credentials: Credentials) -> str:
    """The Authorization header value for HTTP Basic with these credentials."""
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def read_token(data: Any) -> str | None:
    """The token of a token endpoint's JSON answer (`token` or OAuth2 `access_token`)."""
    if not isinstance(data, dict):
        return None
    token = data.get("token") or data.get("access_token")
    return token if isinstance(token, str) and token else None
