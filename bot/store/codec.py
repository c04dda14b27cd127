"""Pure conversion between the shared dataclasses and JSON-ready values, for the store's JSON columns.

Encoding is total over the types; decoding is total over any JSON value: unknown enum values become
`Cause.OTHER` (or are dropped, for actions), missing or ill-typed fields take their defaults, so a row written by
an older or newer version of the bot never makes a read fail.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from bot.model import ActionKind, Cause, Diagnosis, Evidence, Facts, FixCommand

FORMAT_VERSION = 1

JSONValue = Any  # what json.dumps accepts: dict, list, str, int, float, bool, None
_E = TypeVar("_E", bound=Enum)


def _str(obj: Mapping[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else default


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_bool(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    return value if isinstance(value, bool) else None


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def enum_or(enum_type: type[_E], value: Any, default: _E) -> _E:
    """Decode a stored enum value; anything unknown is `default`."""
    try:
        return enum_type(value)
    except ValueError:
        return default


def cause_from_json(value: Any) -> Cause:
    """Decode a cause id; anything unknown is `Cause.OTHER`."""
    try:
        return Cause(value)
    except ValueError:
        return Cause.OTHER


def facts_to_json(facts: Facts) -> dict[str, JSONValue]:
    """Encode Facts."""
    return {
        "registry": facts.registry,
        "repository": facts.repository,
        "reference": facts.reference,
        "http_status": facts.http_status,
        "platform": facts.platform,
        "host": facts.host,
    }


def facts_from_json(value: Any) -> Facts:
    """Decode Facts."""
    obj = _mapping(value)
    return Facts(
        registry=_opt_str(obj, "registry"),
        repository=_opt_str(obj, "repository"),
        reference=_opt_str(obj, "reference"),
        http_status=_opt_int(obj, "http_status"),
        platform=_opt_str(obj, "platform"),
        host=_opt_str(obj, "host"),
    )


def evidence_to_json(evidence: Evidence) -> dict[str, JSONValue]:
    """Encode one Evidence line."""
    return {"text": evidence.text, "source": evidence.source, "ok": evidence.ok}


def evidence_from_json(value: Any) -> Evidence:
    """Decode one Evidence line."""
    obj = _mapping(value)
    return Evidence(text=_str(obj, "text"), source=_str(obj, "source"), ok=_opt_bool(obj, "ok"))


def fix_to_json(fix: FixCommand) -> dict[str, JSONValue]:
    """Encode one FixCommand."""
    return {"title": fix.title, "command": fix.command, "mutating": fix.mutating}


def fix_from_json(value: Any) -> FixCommand:
    """Decode one FixCommand."""
    obj = _mapping(value)
    return FixCommand(title=_str(obj, "title"), command=_str(obj, "command"), mutating=obj.get("mutating") is True)


def diagnosis_to_json(diagnosis: Diagnosis) -> dict[str, JSONValue]:
    """Encode a Diagnosis with its nested facts, evidence, fixes and actions."""
    return {
        "v": FORMAT_VERSION,
        "cause": diagnosis.cause.value,
        "summary": diagnosis.summary,
        # JSON (and PostgreSQL) has no NaN or infinity: those are stored as null and read back as 0.
        "confidence": diagnosis.confidence if math.isfinite(diagnosis.confidence) else None,
        "facts": facts_to_json(diagnosis.facts),
        "evidence": [evidence_to_json(e) for e in diagnosis.evidence],
        "fixes": [fix_to_json(f) for f in diagnosis.fixes],
        "actions": [a.value for a in diagnosis.actions],
        "raw_message": diagnosis.raw_message,
        "message_cause": None if diagnosis.message_cause is None else diagnosis.message_cause.value,
    }


def diagnosis_from_json(value: Any) -> Diagnosis:
    """Decode a Diagnosis; never raises."""
    obj = _mapping(value)
    confidence = obj.get("confidence")
    actions: list[ActionKind] = []
    for item in _list(obj, "actions"):
        try:
            actions.append(ActionKind(item))
        except ValueError:
            continue
    message_cause = obj.get("message_cause")
    return Diagnosis(
        cause=cause_from_json(obj.get("cause")),
        summary=_str(obj, "summary"),
        confidence=float(confidence)
        if isinstance(confidence, int | float) and not isinstance(confidence, bool)
        else 0.0,
        facts=facts_from_json(obj.get("facts")),
        evidence=tuple(evidence_from_json(e) for e in _list(obj, "evidence")),
        fixes=tuple(fix_from_json(f) for f in _list(obj, "fixes")),
        actions=tuple(actions),
        raw_message=_str(obj, "raw_message"),
        message_cause=None if message_cause is None else cause_from_json(message_cause),
    )


def str_tuple_from_json(value: Any) -> tuple[str, ...]:
    """Decode a JSON list of strings (non-strings are dropped)."""
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def str_dict_from_json(value: Any) -> dict[str, str]:
    """Decode a JSON object of strings (non-string values are dropped)."""
    obj = _mapping(value)
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, str)}


def blocks_from_json(value: Any) -> tuple[dict[str, object], ...]:
    """Decode a list of Block Kit blocks."""
    return tuple(dict(b) for b in value if isinstance(b, Mapping)) if isinstance(value, list) else ()


def iso_utc(value: datetime) -> str:
    """Format a timestamp as ISO 8601 in UTC with microseconds (a stable text for hashing)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")
