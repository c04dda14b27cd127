"""When the credentials in a pull secret stop working (pure; values are read in memory and never returned).

- Amazon ECR: `docker login` passwords from `GetAuthorizationToken` are valid for 12 hours (AWS ECR user guide,
  "Private registry authentication": "an authorization token ... is valid for 12 hours"). The password itself is a
  base64 JSON envelope that carries an `expiration` (Unix seconds); where it cannot be read, the secret's last write
  (managedFields, else creation) plus 12 hours is used.
- Tokens that are JWTs (GitLab deploy tokens are not; GCP access tokens are not; many OIDC-issued robot tokens are):
  the `exp` claim of the payload (RFC 7519 section 4.1.4).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

ECR_TOKEN_LIFETIME = timedelta(hours=12)
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?(:\d+)?$")


@dataclass(frozen=True, slots=True)
class Expiry:
    """When a credential stops working, and how that was told (`basis` never holds a credential byte)."""

    at: datetime
    basis: str

    def state(self, now: datetime, warn_before: timedelta) -> str | None:
        """ "expired", "expiring" (within `warn_before`) or None."""
        if self.at <= now:
            return "expired"
        if self.at - now <= warn_before:
            return "expiring"
        return None


def is_ecr(host: str) -> bool:
    return bool(_ECR_HOST.match(host.lower()))


def last_written(secret_meta: Mapping[str, Any]) -> datetime | None:
    """The newest managedFields time of a Secret, else its creationTimestamp."""
    times = [
        str(f.get("time")) for f in secret_meta.get("managedFields") or [] if isinstance(f, Mapping) and f.get("time")
    ]
    created = secret_meta.get("creationTimestamp")
    for text in sorted(times, reverse=True) + ([str(created)] if created else []):
        parsed = _time(text)
        if parsed is not None:
            return parsed
    return None


def _time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        return None


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10**11:
        return None
    return datetime.fromtimestamp(value, UTC)


def expiry_of(host: str, username: str, password: str, written: datetime | None) -> Expiry | None:
    """When the credential for `host` expires, if that can be told."""
    if is_ecr(host):
        envelope = _b64json(password.replace("+", "-").replace("/", "_"))
        at = _epoch(envelope.get("expiration")) if isinstance(envelope, dict) else None
        if at is not None:
            return Expiry(at, "the ECR token's own expiration")
        if written is not None:
            return Expiry(written + ECR_TOKEN_LIFETIME, "ECR tokens last 12 h from the secret's last write")
        return None
    parts = password.split(".")
    if len(parts) == 3 and all(parts):
        claims = _b64json(parts[1])
        at = _epoch(claims.get("exp")) if isinstance(claims, dict) else None
        if at is not None:
            return Expiry(at, "the token's exp claim")
    return None
