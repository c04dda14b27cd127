"""Turn registry answers and client exceptions into ProbeOutcome values with safe, short details."""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import re
import socket
import ssl
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import aiohttp

from bot.model import ProbeOutcome
from bot.registry.netguard import BlockedAddress

DETAIL_MAX = 300
_REDACTED = "<redacted>"


def outcome_for_status(status: int, error_code: str | None = None) -> ProbeOutcome:
    """The outcome of an HTTP status, refined for 404 by the registry's error code."""
    if 200 <= status < 300:
        return ProbeOutcome.OK
    if status == 401:
        return ProbeOutcome.UNAUTHORIZED
    if status == 403:
        return ProbeOutcome.FORBIDDEN
    if status == 404:
        return ProbeOutcome.NAME_UNKNOWN if error_code == "NAME_UNKNOWN" else ProbeOutcome.MANIFEST_UNKNOWN
    if status == 429:
        return ProbeOutcome.RATE_LIMITED
    if status >= 500:
        return ProbeOutcome.SERVER_ERROR
    return ProbeOutcome.ERROR


def parse_error_body(body: str) -> tuple[str | None, str]:
    """The first error's code and message of an OCI error body, or (None, the start of a plain body)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, " ".join(body.split())[:120]
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        message = first.get("message")
        return (str(code) if code is not None else None), (str(message) if message is not None else "")
    return None, ""


def _os_error(exc: BaseException) -> OSError | None:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        return os_error
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(cause, OSError) else None


def outcome_for_exception(exc: BaseException) -> tuple[ProbeOutcome, str]:
    """Classify a failure to talk to the registry: denied address, DNS, refused, timeout, TLS or other."""
    if _blocked(exc):
        return ProbeOutcome.ERROR, BLOCKED_DETAIL
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return ProbeOutcome.DNS, "the registry host name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ProbeOutcome.TLS, f"certificate not trusted: {_cert_reason(exc)}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ProbeOutcome.TLS, f"TLS handshake failed: {_ssl_reason(exc)}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ProbeOutcome.TIMEOUT, "the registry did not answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = _os_error(exc)
        if isinstance(os_error, socket.gaierror):
            return ProbeOutcome.DNS, "the registry host name does not resolve"
        if isinstance(os_error, ConnectionRefusedError) or (
            os_error is not None and os_error.errno == errno.ECONNREFUSED
        ):
            return ProbeOutcome.REFUSED, "connection refused"
        if os_error is not None and os_error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return ProbeOutcome.REFUSED, "network or host unreachable"
        return ProbeOutcome.ERROR, f"cannot connect: {type(exc).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProbeOutcome.ERROR, "the registry closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeOutcome.ERROR, f"bad HTTP answer: {exc.message}"[:DETAIL_MAX]
    return ProbeOutcome.ERROR, f"{type(exc).__name__}"


BLOCKED_DETAIL = (
    "not probed: the registry (or its redirect or token realm) is in a denied network range"
    " (settings registry.allow_networks / registry.allow_registries)"
)


def _blocked(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BlockedAddress):
            return True
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, BlockedAddress):
            return True
        current = current.__cause__ or current.__context__
    return False


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    error = exc.certificate_error
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    return str(reason)[:120]


def _ssl_reason(exc: BaseException) -> str:
    inner = _os_error(exc) if isinstance(exc, aiohttp.ClientSSLError) else exc
    reason = getattr(inner, "reason", None) or type(inner or exc).__name__
    return str(reason)[:120]


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """Every encoding a credential may come back in: as is, base64 (alone and of `user:password` pairs, which the
    caller passes as a whole), URL- and form-encoded, JSON-escaped; longest first so that no part of a longer
    form survives the replacement of a shorter one."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < 3:
            continue
        for value in (secret, secret.removeprefix("Basic ").removeprefix("Bearer ")):
            forms.update(
                {
                    value,
                    base64.b64encode(value.encode()).decode("ascii"),
                    base64.urlsafe_b64encode(value.encode()).decode("ascii"),
                    base64.b64encode(value.encode()).decode("ascii").rstrip("="),
                    quote(value, safe=""),
                    quote_plus(value),
                    quote(value),
                    json.dumps(value)[1:-1],
                }
            )
    return sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str], limit: int = DETAIL_MAX) -> str:
    """`text` without any of `secrets` in any encoding or letter case, THEN shortened to `limit`.

    Scrubbing comes before the cut: a cut first could leave the start of a credential that no longer matches.
    """
    for form in secret_forms(secrets):
        text = re.sub(re.escape(form), _REDACTED, text, flags=re.IGNORECASE)
    return text[:limit]
