"""Challenge parsing, token answers, error bodies and outcome classification."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from bot.model import Credentials, ProbeOutcome
from bot.registry import auth, errors


def test_bearer_challenge() -> None:
    """Docker Hub's challenge: realm, service, a quoted scope with a comma, and an error."""
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push",error="insufficient_scope"'
    )
    challenge = auth.parse_challenge(header)
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.params["scope"] == "repository:library/nginx:pull,push"
    assert challenge.params["error"] == "insufficient_scope"
    assert auth.token_query(challenge, "team/app") == {
        "scope": "repository:team/app:pull",
        "service": "registry.docker.io",
    }


def test_basic_challenge_and_empty() -> None:
    """distribution's htpasswd challenge; no header gives None."""
    challenge = auth.parse_challenge('Basic realm="test-registry"')
    assert challenge == auth.Challenge("basic", {"realm": "test-registry"})
    assert auth.parse_challenge(None) is None
    assert auth.parse_challenge("  ") is None


def test_basic_header_and_token() -> None:
    """Basic is base64 of user:password; the token is `token` or `access_token`."""
    assert auth.basic_header(Credentials("user", "pass")) == "Basic dXNlcjpwYXNz"
    assert auth.read_token({"token": "t1"}) == "t1"
    assert auth.read_token({"access_token": "t2"}) == "t2"
    assert auth.read_token({"token": ""}) is None
    assert auth.read_token([]) is None


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (200, None, ProbeOutcome.OK),
        (401, "UNAUTHORIZED", ProbeOutcome.UNAUTHORIZED),
        (403, "DENIED", ProbeOutcome.FORBIDDEN),
        (404, "MANIFEST_UNKNOWN", ProbeOutcome.MANIFEST_UNKNOWN),
        (404, "NAME_UNKNOWN", ProbeOutcome.NAME_UNKNOWN),
        (404, None, ProbeOutcome.MANIFEST_UNKNOWN),
        (429, "TOOMANYREQUESTS", ProbeOutcome.RATE_LIMITED),
        (502, None, ProbeOutcome.SERVER_ERROR),
        (418, None, ProbeOutcome.ERROR),
    ],
)
def test_outcome_for_status(status: int, code: str | None, outcome: ProbeOutcome) -> None:
    """Statuses map to outcomes; 404 is refined by the error code."""
    assert errors.outcome_for_status(status, code) == outcome


def test_parse_error_body() -> None:
    """The first OCI error's code and message; a plain body is kept short."""
    body = '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    assert errors.parse_error_body(body) == ("MANIFEST_UNKNOWN", "manifest unknown")
    assert errors.parse_error_body("404 page not found\n") == (None, "404 page not found")
    assert errors.parse_error_body("{}") == (None, "")


def test_exception_outcomes() -> None:
    """gaierror is DNS, a refused connection REFUSED, a timeout TIMEOUT."""
    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    assert errors.outcome_for_exception(socket.gaierror(-2, "Name or service not known"))[0] == ProbeOutcome.DNS
    assert errors.outcome_for_exception(refused)[0] == ProbeOutcome.REFUSED
    assert errors.outcome_for_exception(TimeoutError())[0] == ProbeOutcome.TIMEOUT
    assert errors.outcome_for_exception(ValueError("x"))[0] == ProbeOutcome.ERROR


def test_scrub() -> None:
    """Secrets are replaced and the text is bounded."""
    assert errors.scrub("user hunter22 said", ["hunter22", ""]) == "user <redacted> said"
    assert len(errors.scrub("x" * 1000, [])) == errors.DETAIL_MAX
