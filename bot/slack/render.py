"""Block Kit and plain-text fallback for every message of an incident thread. Pure: no I/O, no client library.

Everything that comes from the cluster or a registry (names, images, error text) is escaped for mrkdwn: `&`, `<`
and `>` become entities, so `<!channel>`, `<@U123>` and `<http://x|y>` show as text and never notify or link;
`@here`-style words get a word joiner; ``` outside code becomes ''', inline code never holds a backtick and
code blocks never hold ```.
Slack's limits are respected: at most 50 blocks, 3000 characters of section text, 10 fields of 2000, 150 characters
of header, 75 of button text, 2000 of button value; long text is cut cleanly with an ellipsis.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.diagnosis import catalogue
from bot.model import ActionKind, Cause, Diagnosis, Evidence, FixCommand, Incident, IncidentScope, IncidentStatus

MAX_BLOCKS = 50
MAX_TEXT = 40_000  # a message's `text` (https://api.slack.com/methods/chat.postMessage#truncating)
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_FALLBACK = 3000
MAX_RAW = 1500  # the kubelet message shown under the diagnosis
MAX_LIST = 10  # pods or workloads listed by name before "+N more"
ACTION_PREFIX = "imagepull:"
ELLIPSIS = "…"

Block = dict[str, object]

_ZWJ = "\u2060"  # word joiner: breaks "@here" and ``` without changing what a reader sees
_FENCE_BROKEN = "`" + _ZWJ + "`" + _ZWJ + "`"  # inside code blocks
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")
# Bidirectional controls (LRM/RLM, embeddings, overrides, isolates, ALM) reorder what a reader sees, e.g. to make a
# command or a name look like another one (Trojan Source, CVE-2021-42574): text from the cluster never carries them.
BIDI_CONTROLS = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")

_BUTTON_LABELS: dict[ActionKind, str] = {
    ActionKind.REDIAGNOSE: "Re-diagnose",
    ActionKind.DELETE_POD: "Delete failing pod",
    ActionKind.RECREATE_SECRET: "Recreate pull secret",
    ActionKind.LINK_SECRET: "Link secret to ServiceAccount",
    ActionKind.SNOOZE: "Snooze 1h",
    ActionKind.MUTE: "Mute",
}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One Slack message: plain-text fallback (notifications, screen readers) and Block Kit blocks."""

    text: str
    blocks: tuple[Block, ...] = ()


# ---- escaping and limits ----


def escape(text: str) -> str:
    """Escape text from the cluster for mrkdwn: entities for `&<>`, no broadcast mentions, no bidi controls."""
    text = BIDI_CONTROLS.sub("", text)
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("```", "'''")
    return _BROADCAST.sub(lambda m: "@" + _ZWJ + m.group(1), out)


def escape_once(text: str) -> str:
    """`escape` for text that may already be escaped mrkdwn (the diagnosis' evidence and summary): an existing
    `&amp;`/`&lt;`/`&gt;` stays as it is (users would otherwise read `&lt;`), anything else is escaped."""
    text = BIDI_CONTROLS.sub("", text)
    out = _BARE_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;").replace("```", "'''")
    return _BROADCAST.sub(lambda m: "@" + _ZWJ + m.group(1), out)


def truncate(text: str, limit: int) -> str:
    """Cut already-escaped text to `limit` characters with an ellipsis, never inside an `&amp;`-style entity."""
    if len(text) <= limit:
        return text
    cut = _PARTIAL_ENTITY.sub("", text[: max(0, limit - len(ELLIPSIS))])
    return cut + ELLIPSIS


def code(text: str) -> str:
    """Inline code for one value from the cluster: escaped, one line, no backtick."""
    flat = " ".join(BIDI_CONTROLS.sub("", text).split()) or " "
    return "`" + escape(flat.replace("`", "'")) + "`"


def code_block(text: str, limit: int = MAX_SECTION) -> str:
    """A fenced code block holding `text` escaped and cut so the whole block fits in `limit` characters."""
    body = escape(text.replace("```", _FENCE_BROKEN))
    body = truncate(body, max(1, limit - 8))
    # A cut may leave a trailing backtick that would merge with the fence.
    if body.endswith("`"):
        body += _ZWJ
    return f"```\n{body}\n```"


def plain(text: str, limit: int) -> str:
    """Text for a plain_text object (no entities needed, no bidi controls), cut to `limit`."""
    flat = " ".join(BIDI_CONTROLS.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + ELLIPSIS


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(mrkdwn, MAX_SECTION)}}


def _fields(pairs: Sequence[tuple[str, str]]) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": truncate(f"*{k}*\n{v}", MAX_FIELD)} for k, v in pairs[:10]],
    }


def _context(*mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(t, MAX_SECTION)} for t in mrkdwn[:10]]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": plain(text, MAX_HEADER), "emoji": True}}


def _finish(text: str, blocks: Sequence[Block]) -> SlackMessage:
    """Apply the message-level limits: fallback length and block count (keeping the last block, usually actions)."""
    out = list(blocks)
    if len(out) > MAX_BLOCKS:
        tail = [out[-1]] if out[-1].get("type") == "actions" else []
        head = out[: MAX_BLOCKS - 1 - len(tail)]
        dropped = len(out) - len(head) - len(tail)
        out = [*head, _context(f"_{dropped} more blocks left out (Slack allows {MAX_BLOCKS})._"), *tail]
    return SlackMessage(text=truncate(text, MAX_FALLBACK), blocks=tuple(out))


# ---- small formatting helpers ----


def cause_title(cause: Cause) -> str:
    """The catalogue title of a cause, or its id when the catalogue has none."""
    try:
        return catalogue.info(cause).title
    except KeyError:
        return cause.value


def format_duration(seconds: float) -> str:
    """Short human duration: 42s, 4m12s, 2h05m, 3d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def format_time(at: datetime | None) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM:SS UTC` (naive datetimes are taken as UTC), or a dash."""
    if at is None:
        return "–"
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _names(names: Sequence[str], limit: int = MAX_LIST) -> str:
    shown = ", ".join(code(n) for n in names[:limit])
    more = len(names) - limit
    return f"{shown} +{more} more" if more > 0 else shown


def status_word(incident: Incident) -> tuple[str, str]:
    """(emoji, word) for the incident's state: open, snoozed, muted or resolved."""
    if incident.status is IncidentStatus.RESOLVED:
        return ":white_check_mark:", "resolved"
    if incident.muted:
        return ":no_bell:", "muted"
    if incident.snoozed_until is not None:
        return ":zzz:", "snoozed"
    return ":red_circle:", "open"


def _where(incident: Incident) -> str:
    return f"{code(str(incident.workload))} in {code(incident.namespace)} on {code(incident.cluster)}"


def _duration(incident: Incident) -> str | None:
    if incident.resolved_at is None or incident.first_seen is None:
        return None
    return format_duration((incident.resolved_at - incident.first_seen).total_seconds())


# ---- the parent message ----


def render_parent(incident: Incident) -> SlackMessage:
    """The short parent message of a thread: state, where, image, cause, pods, times (a registry parent if scoped)."""
    if incident.scope is IncidentScope.REGISTRY:
        return render_registry_parent(incident)
    emoji, word = status_word(incident)
    title = cause_title(incident.cause)
    lines = [
        f"{emoji} *{word.upper()}* · image pull failure: {_where(incident)}",
        f"*Cause:* {code(incident.cause.value)} {escape(title)}",
    ]
    if incident.diagnosis is not None and incident.diagnosis.summary:
        lines.append(escape_once(" ".join(incident.diagnosis.summary.split())))
    fields = [
        ("Image", code(incident.image)),
        ("Container", code(incident.container)),
        ("Pods failing now", f"{len(incident.pods)}" + (f": {_names(incident.pods)}" if incident.pods else "")),
        ("Pods seen", str(incident.pods_seen)),
        ("First seen", format_time(incident.first_seen)),
        ("Last seen", format_time(incident.last_seen)),
    ]
    duration = _duration(incident)
    if duration is not None:
        fields.append(("Resolved after", duration))
    if incident.snoozed_until is not None and incident.status is IncidentStatus.OPEN:
        fields.append(("Snoozed until", format_time(incident.snoozed_until)))
    context = [f"incident {code(incident.key)}"]
    if incident.reopened:
        context.append(f"reopened {incident.reopened}×")
    blocks = [_section("\n".join(lines)), _fields(fields), _context(" · ".join(context))]
    text = (
        f"{word.upper()}: {escape(str(incident.workload))} in {escape(incident.namespace)} "
        f"({escape(incident.cluster)}): {incident.cause.value} {escape(title)}, image {escape(incident.image)}"
    )
    if duration is not None:
        text += f", resolved after {duration}"
    return _finish(text, blocks)


def render_registry_parent(incident: Incident) -> SlackMessage:
    """The parent of a registry incident: one registry-level cause shared by the workloads it lists."""
    emoji, word = status_word(incident)
    title = cause_title(incident.cause)
    n = len(incident.affected)
    lines = [
        f"{emoji} *{word.upper()}* · registry {code(incident.registry)} on {code(incident.cluster)}: "
        f"{code(incident.cause.value)} {escape(title)}",
        f"*{n} workload{'s' if n != 1 else ''} affected:* {_names(incident.affected, 20) if n else '–'}",
    ]
    if incident.diagnosis is not None and incident.diagnosis.summary:
        lines.append(escape_once(" ".join(incident.diagnosis.summary.split())))
    fields = [
        ("Pods failing now", str(len(incident.pods))),
        ("Pods seen", str(incident.pods_seen)),
        ("First seen", format_time(incident.first_seen)),
        ("Last seen", format_time(incident.last_seen)),
    ]
    duration = _duration(incident)
    if duration is not None:
        fields.append(("Resolved after", duration))
    blocks = [_section("\n".join(lines)), _fields(fields), _context(f"incident {code(incident.key)}")]
    text = (
        f"{word.upper()}: registry {escape(incident.registry)} ({escape(incident.cluster)}): "
        f"{incident.cause.value} {escape(title)}, {n} workloads affected"
    )
    return _finish(text, blocks)


# ---- thread replies ----


def _evidence_line(e: Evidence) -> str:
    mark = {True: ":white_check_mark:", False: ":x:", None: ":small_blue_diamond:"}[e.ok]
    return f"{mark} {escape_once(' '.join(e.text.split()))} _({escape(e.source)})_"


def _fix_blocks(fixes: Sequence[FixCommand]) -> list[Block]:
    blocks: list[Block] = []
    for i, fix in enumerate(fixes, 1):
        head = f"*{i}. {escape(' '.join(fix.title.split()))}*"
        if fix.mutating:
            head += " _(changes the cluster)_"
        blocks.append(_section(head + "\n" + code_block(fix.command, MAX_SECTION - len(head) - 1)))
    return blocks


def button_value(incident_key: str) -> str | None:
    """The JSON value carried by a button, or None when it would exceed Slack's 2000 characters."""
    value = json.dumps({"incident": incident_key}, separators=(",", ":"))
    return value if len(value) <= MAX_BUTTON_VALUE else None


def action_block(incident: Incident, actions: Sequence[ActionKind]) -> Block | None:
    """The buttons row of a thread parent (value: the incident key), or None without a usable key or action."""
    return _actions(incident, actions)


def _actions(incident: Incident, actions: Sequence[ActionKind]) -> Block | None:
    value = button_value(incident.key)
    if value is None or not actions:
        return None
    elements: list[dict[str, object]] = []
    for kind in list(dict.fromkeys(actions))[:25]:
        button: dict[str, object] = {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{kind.value}",
            "text": {"type": "plain_text", "text": plain(_BUTTON_LABELS.get(kind, kind.value), MAX_BUTTON_TEXT)},
            "value": value,
        }
        if kind is ActionKind.REDIAGNOSE:
            button["style"] = "primary"
        if kind is ActionKind.DELETE_POD:
            button["style"] = "danger"
            button["confirm"] = {
                "title": {"type": "plain_text", "text": "Propose deleting the pod?"},
                "text": {"type": "plain_text", "text": "The proposal still needs an approval before anything runs."},
                "confirm": {"type": "plain_text", "text": "Propose"},
                "deny": {"type": "plain_text", "text": "Cancel"},
            }
        elements.append(button)
    # Slack refuses a message whose blocks repeat a block_id; one answer may hold the buttons of several incidents
    # (a diagnose of a workload with two failing containers), so the id names the incident.
    return {"type": "actions", "block_id": actions_block_id(incident.key), "elements": elements}


def actions_block_id(incident_key: str) -> str:
    """The block_id of an incident's buttons: unique per incident, at most 255 characters as Slack requires."""
    return "imagepull_actions:" + hashlib.sha256(incident_key.encode()).hexdigest()[:16]


def unique_block_ids(blocks: Sequence[Block]) -> list[Block]:
    """`blocks` with every repeated block_id made unique (a suffix), for answers assembled from several parts."""
    seen: set[str] = set()
    out: list[Block] = []
    for block in blocks:
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            candidate, n = block_id, 1
            while candidate in seen:
                n += 1
                candidate = f"{block_id[:250]}.{n}"
            seen.add(candidate)
            if candidate != block_id:
                block = {**block, "block_id": candidate}
        out.append(block)
    return out


def _diagnosis_blocks(incident: Incident, diagnosis: Diagnosis, lead: str) -> tuple[str, list[Block]]:
    title = cause_title(diagnosis.cause)
    summary = escape_once(" ".join(diagnosis.summary.split()))
    head = [
        f"{lead} {summary}".strip(),
        f"*Cause:* {code(diagnosis.cause.value)} {escape(title)} · *confidence* {round(diagnosis.confidence * 100)}%",
    ]
    if diagnosis.message_cause is not None and diagnosis.message_cause != diagnosis.cause:
        head.append(f"_The message alone read as {code(diagnosis.message_cause.value)}; evidence refined it._")
    blocks: list[Block] = [_section("\n".join(head))]
    if diagnosis.evidence:
        lines = [_evidence_line(e) for e in diagnosis.evidence]
        blocks.append(_section("*Evidence*\n" + "\n".join(lines)))
    if diagnosis.fixes:
        blocks.append(_section("*Fix*"))
        blocks.extend(_fix_blocks(diagnosis.fixes))
    if diagnosis.raw_message:
        blocks.append(_section("*Message*\n" + code_block(diagnosis.raw_message, MAX_RAW)))
    actions = _actions(incident, diagnosis.actions)
    if actions is not None:
        blocks.append(actions)
    text = f"{lead} {diagnosis.cause.value}: {summary}".strip()
    return text, blocks


def render_diagnosis(incident: Incident, diagnosis: Diagnosis) -> SlackMessage:
    """The diagnosis reply: summary, cause, confidence, evidence, fix commands, raw message and buttons."""
    text, blocks = _diagnosis_blocks(incident, diagnosis, ":stethoscope: *Diagnosis:*")
    return _finish(text.replace("*", ""), blocks)


def render_new_fact(incident: Incident, lines: Sequence[str]) -> SlackMessage:
    """A reply telling facts new to the thread, e.g. "3 more pods: ..." or "cause changed to ..."."""
    shown = [escape(" ".join(line.split())) for line in lines if line.strip()]
    body = "\n".join(f"• {s}" for s in shown) or "• (no detail)"
    blocks = [_section(f":information_source: *New since the last update*\n{body}")]
    return _finish("New: " + "; ".join(shown), blocks)


def render_more_pods(incident: Incident, pods: Sequence[str]) -> SlackMessage:
    """A new-fact reply for pods that joined the incident."""
    n = len(pods)
    body = f":heavy_plus_sign: {n} more pod{'s' if n != 1 else ''}: {_names(pods)}"
    return _finish(f"{n} more pods: " + ", ".join(escape(p) for p in pods[:MAX_LIST]), [_section(body)])


def render_cause_changed(incident: Incident, previous: Cause, diagnosis: Diagnosis) -> SlackMessage:
    """A new-fact reply when verification or new text changed the cause, with the new diagnosis."""
    lead = f":arrows_counterclockwise: *Cause changed* from {code(previous.value)} to {code(diagnosis.cause.value)}:"
    text, blocks = _diagnosis_blocks(incident, diagnosis, lead)
    return _finish(text.replace("*", ""), blocks)


def render_resolved(incident: Incident, reason: str) -> SlackMessage:
    """The resolved reply: "resolved after 4m12s: container started"."""
    duration = _duration(incident)
    after = f" after {duration}" if duration is not None else ""
    why = escape(" ".join(_REASONS.get(reason, reason).split()))
    body = f":white_check_mark: *Resolved*{after}: {why}"
    return _finish(f"Resolved{after}: {why}", [_section(body)])


_REASONS = {
    "started": "container started",
    "pod_deleted": "failing pods are gone",
    "image_changed": "the workload now uses another image",
}


def render_reopened(incident: Incident, diagnosis: Diagnosis | None = None) -> SlackMessage:
    """The reopened reply: the failure came back within the relapse window, with the current diagnosis."""
    n = incident.reopened
    lead = f":repeat: *Reopened*{f' ({n}×)' if n > 1 else ''}: the pull failure is back."
    if diagnosis is None:
        return _finish(lead.replace("*", ""), [_section(lead)])
    text, blocks = _diagnosis_blocks(incident, diagnosis, lead)
    return _finish(text.replace("*", ""), blocks)


class SlackRenderer:
    """The renderer `bot.incidents.IncidentBook` takes: each method returns a `SlackMessage`."""

    def parent(self, incident: Incident) -> SlackMessage:
        """The parent message (workload or registry incident)."""
        return render_parent(incident)

    def diagnosis(self, incident: Incident, diagnosis: Diagnosis) -> SlackMessage:
        """The diagnosis reply."""
        return render_diagnosis(incident, diagnosis)

    def new_fact(self, incident: Incident, lines: Sequence[str]) -> SlackMessage:
        """A reply with facts new to the thread."""
        return render_new_fact(incident, lines)

    def resolved(self, incident: Incident, reason: str) -> SlackMessage:
        """The resolved reply."""
        return render_resolved(incident, reason)

    def reopened(self, incident: Incident, diagnosis: Diagnosis) -> SlackMessage:
        """The reopened reply."""
        return render_reopened(incident, diagnosis)
