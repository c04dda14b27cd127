"""Block Kit checks the fake Slack applies to message and modal blocks, as Slack's API does.

Each function returns a list of problems (empty when Slack would accept the payload); the fake answers
`invalid_blocks` (messages) or `invalid_arguments` (views) with them in `response_metadata.messages`, in the
`[ERROR] ... [json-pointer:/blocks/N/...]` shape Slack uses. Limits are those of Slack's Block Kit reference
(docs.slack.dev/reference/block-kit): block_id and action_id up to 255 characters, block ids unique in a message
or view, action ids unique in their block, section text 3000, fields 10 of 2000, header 150, button text 75,
button value 2000, url 3000, context 10 elements, actions 25 elements, 50 blocks in a message and 100 in a view,
view title/submit/close 24, private_metadata 3000, callback_id 255.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000

_BLOCK_TYPES = {"section", "actions", "context", "divider", "header", "image", "input", "rich_text", "markdown"}


def _text_object(obj: Any, where: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"must be a text object [json-pointer:{where}]"]
    kind = obj.get("type")
    allowed = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
    if kind not in allowed:
        return [f"must be one of {sorted(allowed)} [json-pointer:{where}/type]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    if len(text) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    return []


def _element(el: Any, where: str, action_ids: set[str]) -> list[str]:
    if not isinstance(el, dict) or not isinstance(el.get("type"), str):
        return [f"must be an element [json-pointer:{where}]"]
    out: list[str] = []
    action_id = el.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or len(action_id) > 255:
            out.append(f"must be less than 256 characters [json-pointer:{where}/action_id]")
        elif action_id in action_ids:
            out.append(f"duplicate action_id {action_id!r} in the block [json-pointer:{where}/action_id]")
        else:
            action_ids.add(action_id)
    if el["type"] == "button":
        out += _text_object(el.get("text"), f"{where}/text", 75, plain_only=True)
        if len(str(el.get("value") or "")) > 2000:
            out.append(f"must be less than 2001 characters [json-pointer:{where}/value]")
        if len(str(el.get("url") or "")) > 3000:
            out.append(f"must be less than 3001 characters [json-pointer:{where}/url]")
        if el.get("style") not in (None, "primary", "danger"):
            out.append(f"must be primary or danger [json-pointer:{where}/style]")
    if el["type"] == "plain_text_input" and len(str(el.get("initial_value") or "")) > 3000:
        out.append(f"must be less than 3001 characters [json-pointer:{where}/initial_value]")
    return out


def _block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        return [f"unsupported block type [json-pointer:{where}/type]"]
    kind = block["type"]
    out: list[str] = []
    action_ids: set[str] = set()
    if kind == "section":
        if "text" not in block and "fields" not in block:
            out.append(f"must provide text or fields [json-pointer:{where}]")
        if "text" in block:
            out += _text_object(block["text"], f"{where}/text", 3000)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not fields or len(fields) > 10:
                out.append(f"must have 1 to 10 items [json-pointer:{where}/fields]")
            else:
                for i, f in enumerate(fields):
                    out += _text_object(f, f"{where}/fields/{i}", 2000)
        if isinstance(block.get("accessory"), dict):
            out += _element(block["accessory"], f"{where}/accessory", action_ids)
    elif kind == "header":
        out += _text_object(block.get("text"), f"{where}/text", 150, plain_only=True)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > 10:
            out.append(f"must have 1 to 10 items [json-pointer:{where}/elements]")
        else:
            for i, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") in ("mrkdwn", "plain_text"):
                    out += _text_object(el, f"{where}/elements/{i}", 3000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > 25:
            out.append(f"must have 1 to 25 items [json-pointer:{where}/elements]")
        else:
            for i, el in enumerate(elements):
                out += _element(el, f"{where}/elements/{i}", action_ids)
    elif kind == "input":
        out += _text_object(block.get("label"), f"{where}/label", 2000, plain_only=True)
        if "hint" in block:
            out += _text_object(block["hint"], f"{where}/hint", 2000, plain_only=True)
        out += _element(block.get("element"), f"{where}/element", action_ids)
    return out


def block_errors(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Problems Slack would report for a `blocks` array (unique block ids, per-field limits)."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    if len(blocks) > limit:
        return [f"no more than {limit} items allowed [json-pointer:/blocks]"]
    out: list[str] = []
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        out += _block(block, where)
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if block_id is None:
            continue
        if not isinstance(block_id, str) or not block_id or len(block_id) > 255:
            out.append(f"must be 1 to 255 characters [json-pointer:{where}/block_id]")
        elif block_id in block_ids:
            out.append(f"duplicate block_id {block_id!r} in the message [json-pointer:{where}/block_id]")
        else:
            block_ids.add(block_id)
    return [f"[ERROR] {m}" for m in out]


def view_errors(view: Any) -> list[str]:
    """Problems Slack would report for a modal view given to views.open / views.update."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["[ERROR] must be a modal view [json-pointer:/view/type]"]
    out: list[str] = []
    for key in ("title", "submit", "close"):
        if key in view or key == "title":
            out += [f"[ERROR] {m}" for m in _text_object(view.get(key), f"/view/{key}", 24, plain_only=True)]
    if len(str(view.get("private_metadata") or "")) > 3000:
        out.append("[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id") or "")) > 255:
        out.append("[ERROR] must be less than 256 characters [json-pointer:/view/callback_id]")
    blocks = view.get("blocks")
    out += block_errors(blocks, limit=MAX_VIEW_BLOCKS)
    has_inputs = isinstance(blocks, list) and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if has_inputs and "submit" not in view:
        out.append("[ERROR] a view with inputs needs a submit button [json-pointer:/view/submit]")
    return out
