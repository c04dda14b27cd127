"""What the classifier does to a message before any rule reads it: normalisation, then masking of names.

`normalise` collapses whitespace and undoes JSON escapes; `mask` then hides image references, URLs, host names,
addresses, secrets and digests in the lowercase text, so that names such as `kube-proxy`, `timeout-svc` or a tag
`404` cannot trigger a rule. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["mask", "normalise"]


def _url_label(match: re.Match[str]) -> str:
    # The match is a whole run of URL characters (greedy: no per-character look-ahead); a colon that ends the run
    # before a space or the end is the message's own separator and stays, as long as the URL keeps a character.
    url, tail = match.group(), ""
    if url[-1] == ":" and url.find("://") + 4 < len(url) and match.string[match.end() : match.end() + 1] != '"':
        url, tail = url[:-1], ":"
    word = url[:-1]  # a path word needs a character after it
    if "/blobs/" in word:
        return "<blob-url>" + tail
    return ("<manifest-url>" if "/manifests/" in word else "<url>") + tail


# Masks, applied in order to the normalised lowercase text when their needle is present; each keeps the
# words that rules read and hides names (images, URLs, hosts, addresses, secrets, digests).
_MASKS: tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # One pass for every URL: a blob URL, a manifest URL or any other URL, each named for what it is.
    ("://", re.compile(r"https?://[^\s\"]+"), _url_label),
    ("docker://", re.compile(r"docker://[^\s\"]+?(?=:\s|:$|\"|\s|$)"), "<ref>"),
    # Quoted names (images, references, hosts); quoted bare words such as "UNAUTHORIZED" stay readable.
    ('"', re.compile(r"\"[^\"\s]*[^a-z_\"\s][^\"\s]*\""), '"<ref>"'),
    (
        "reading manifest",
        re.compile(r"(reading manifest)(?<!\wreading manifest) \S+ in [^\s:]+(?::\d+)?[^\s:]*"),
        r"\1 <ref> in <ref>",
    ),
    ("manifest for", re.compile(r"(manifest for)(?<!\wmanifest for) \S+ (not found)"), r"\1 <ref> \2"),
    ("access denied for", re.compile(r"(pull access denied for)(?<!\wpull access denied for) [^\s,]+"), r"\1 <ref>"),
    ("not found", re.compile(r"(image)(?<!\wimage) [^\s\"]+ (not found)"), r"\1 <ref> \2"),
    ("lookup ", re.compile(r"(lookup)(?<!\wlookup) [^\s:]+"), r"\1 <host>"),
    ("dial tcp ", re.compile(r"(dial tcp)(?<!\wdial tcp) (?:\[[^\]]*\]|[^\s:\[]+):\d+"), r"\1 <addr>"),
    (" on ", re.compile(r"(on)(?<!\won) (?:\[[^\]]*\]|\d+\.\d+\.\d+\.\d+):\d+"), r"\1 <addr>"),
    (
        "->",
        re.compile(r"((?:read(?<!\wread)|write(?<!\wwrite)) (?:udp|tcp)) \S+->\S+?(?=:\s|$)"),
        r"\1 <addr>",
    ),
    (
        "host ",
        re.compile(
            r"(pulling from host(?<!\wpulling from host)|to host(?<!\wto host)|from host(?<!\wfrom host))"
            r" [^\s:]+(?::\d+)?"
        ),
        r"\1 <host>",
    ),
    ("secret", re.compile(r"(secret(?<!\wsecret)s?) \([^)]*\)"), r"\1 (<secret>)"),
    ("sha", re.compile(r"sha(?<!\wsha)(?:256|384|512):[0-9a-f]+"), "<digest>"),
    (
        "/",
        re.compile(r"\b[a-z0-9-][a-z0-9.-]*\.[a-z]{2,}(?::\d+)?(?:/[a-z0-9._-]+)+(?::[\w.-]+)?"),
        "<ref>",
    ),
)
# Every match of the last mask holds `.tld/` or `.tld:port/`: a fast pre-check before its slow scan.
_DOMAIN_PATH_RE = re.compile(r"\.[a-z]{2,}(?::\d+)?/")

_DOMAIN_PATH_MASK = _MASKS[-1][1]


def normalise(message: str) -> str:
    """Collapse whitespace and undo JSON-style quote escapes, so every runtime's text reads alike."""
    text = message.replace('\\"', '"') if '\\"' in message else message
    # isprintable() is False for every whitespace character but the space: such text with no double, leading or
    # trailing space is already what split/join would give.
    if "  " not in text and text.isprintable() and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def mask(low: str) -> str:
    """Hide names in the normalised lowercase text `low`, keeping the words that rules read."""
    for needle, pattern, replacement in _MASKS:
        if needle in low and (pattern is not _DOMAIN_PATH_MASK or _DOMAIN_PATH_RE.search(low)):
            low = pattern.sub(replacement, low)
    return low
