"""Slack's v0 request signature headers, as Slack sends them to an app (the demo and tests play Slack with them)."""

from __future__ import annotations

import hashlib
import hmac
import time


def signed_headers(body: str, secret: str, ts: int | None = None) -> dict[str, str]:
    """Timestamp, `v0=` HMAC-SHA256 signature and form content type for a request `body` (ts: now by default)."""
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
