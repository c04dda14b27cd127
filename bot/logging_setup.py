"""Logging: plain or JSON lines, with a last-line-of-defence filter that masks anything shaped like a secret."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

# Incident id carried by log records written while handling an incident (structured logs, issue 7).
incident_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("incident_id", default=None)

_SECRET_PATTERNS = (
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{6,}"),  # Slack tokens
    re.compile(r"xapp-[A-Za-z0-9-]{6,}"),  # Slack app-level tokens
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer)\s+)[^\s\"']+"),
    re.compile(r"(?i)(\"?(?:password|passwd|auth|identitytoken|registrytoken|token)\"?\s*[:=]\s*\"?)[^\s\",}]+"),
)


def redact(text: str) -> str:
    """Mask Slack tokens, Authorization headers and password-like key/value pairs."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "<redacted>", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        inc = incident_id.get()
        if inc is not None and not hasattr(record, "incident"):
            record.incident = inc
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, incident id when known."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "incident", None):
            out["incident"] = getattr(record, "incident")  # noqa: B009 (set by RedactingFilter)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


# Libraries that log request or response bodies or SQL parameters (pull secrets, credentials, Slack payloads) at
# DEBUG/INFO: pinned to WARNING whatever the bot's level. The SQL engine also hides parameters (bot.store.engine).
NOISY_LOGGERS = (
    "aiohttp.access",
    "kubernetes_asyncio.client.rest",
    "slack_bolt",
    "slack_sdk",
    "alembic",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "aiosqlite",
    "asyncpg",
)


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_imagepull", False):
            root.removeHandler(h)
    handler = logging.StreamHandler()
    handler._imagepull = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
