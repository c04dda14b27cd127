"""Render Slack threads (as recorded by the fake Web API) as readable terminal text, for the demo. Pure."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_EMOJI = {
    ":red_circle:": "[OPEN]",
    ":white_check_mark:": "[ok]",
    ":x:": "[!!]",
    ":small_blue_diamond:": "[--]",
    ":zzz:": "[snoozed]",
    ":no_bell:": "[muted]",
    ":stethoscope:": "",
    ":information_source:": "[i]",
    ":heavy_plus_sign:": "[+]",
    ":arrows_counterclockwise:": "[~]",
    ":repeat:": "[reopened]",
}
_EMOJI_RE = re.compile(r":[a-z0-9_+-]+:")


class MessageLike(Protocol):
    """What terminal rendering needs of a message."""

    @property
    def text(self) -> str: ...

    @property
    def blocks(self) -> Sequence[Mapping[str, Any]]: ...


class ThreadLike(Protocol):
    """What terminal rendering needs of a thread."""

    @property
    def parent(self) -> MessageLike: ...

    @property
    def replies(self) -> Sequence[MessageLike]: ...


def unmrkdwn(text: str) -> str:
    """Mrkdwn to plain terminal text: entities decoded, emoji codes shortened, `*bold*` markers dropped."""
    out = _EMOJI_RE.sub(lambda m: _EMOJI.get(m.group(0), m.group(0)), text)
    out = out.replace("\u2060", "")
    for entity, char in _ENTITIES:
        out = out.replace(entity, char)
    return re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", out).strip()


def _block_lines(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    lines: list[str] = []
    if kind in {"section", "header"}:
        text = block.get("text")
        if isinstance(text, Mapping):
            lines.extend(unmrkdwn(str(text.get("text", ""))).splitlines())
        fields = block.get("fields")
        if isinstance(fields, list):
            lines.extend("  ".join(unmrkdwn(str(f.get("text", ""))).split("\n", 1)) for f in fields)
    elif kind == "context":
        parts = [unmrkdwn(str(e.get("text", ""))) for e in block.get("elements", []) if isinstance(e, Mapping)]
        lines.append("(" + " · ".join(parts) + ")")
    elif kind == "actions":
        labels = []
        for e in block.get("elements", []):
            text = e.get("text") if isinstance(e, Mapping) else None
            if isinstance(text, Mapping):
                labels.append(f"[{text.get('text', '')}]")
        lines.append("buttons: " + " ".join(labels))
    return lines


def render_message(message: MessageLike) -> list[str]:
    """The lines of one message: its blocks when it has some, else its fallback text."""
    lines: list[str] = []
    for block in message.blocks:
        lines.extend(_block_lines(block))
    if not lines:
        lines = unmrkdwn(message.text).splitlines()
    return [line.replace("```", "").rstrip() for line in lines if line.strip() not in {"", "```"}]


def render_thread(thread: ThreadLike, width: int = 110) -> str:
    """A thread as text: the parent, then each reply indented under it."""
    out = ["━" * min(width, 80)]
    out.extend(textwrap.shorten(line, width) if len(line) > width else line for line in render_message(thread.parent))
    for reply in thread.replies:
        out.append("  └─")
        out.extend("     " + line for line in render_message(reply))
    return "\n".join(out)


def render_threads(threads: Iterable[ThreadLike], width: int = 110) -> str:
    """Every thread, one after the other."""
    return "\n".join(render_thread(t, width) for t in threads)
