"""Fact extraction: the registry, repository, reference, host, HTTP status and platform a message names.

Facts are read from the normalised text (names keep their case), its lowercase form, and, for the HTTP status,
the masked lowercase text so that a tag or port such as `404` is never taken for a status. Pure, no I/O.
"""

from __future__ import annotations

import re

from bot import imageref
from bot.model import Cause, Facts

__all__ = ["extract_facts"]

_QUOTED_RE = re.compile(r"\"([^\"\s]+)\"")
_IMAGE_WORDS = ("image ", "reference ")
_IMAGE_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ('"', _QUOTED_RE),
    ("docker://", re.compile(r"docker://([^\s\"]+?)(?=:\s|:$|\"|\s|$)")),
    ("manifest for", re.compile(r"manifest for (\S+) not found")),
    ("access denied for", re.compile(r"pull access denied for ([^\s,]+)")),
    ("not found", re.compile(r"image(?<!\wimage) (\S+) not found")),
)
_READING_MANIFEST_RE = re.compile(r"reading manifest (\S+) in ([^\s:]+(?::\d+)?[^\s:]*)")
_PULL_HOST_RE = re.compile(r"(?:pulling from host|to host|from host) ([^\s:]+(?::\d+)?)")
_URL_HOST_RE = re.compile(r"https?://([^/\s\"]+)")
_REGISTRY_URL_RE = re.compile(
    r"https?://([^/\s\"]+)/v2/(?:([a-z0-9._/-]+?)/(?:manifests|blobs|tags)/([^\s\"?]+?)(?=:\s|:$|\"|\s|\?|$))?"
)
_TOKEN_SERVICE_RE = re.compile(r"[?&]service=([a-z0-9.:-]+)", re.I)
_LOOKUP_RE = re.compile(r"lookup(?<!\wlookup) ([^\s:]+)")
_DIAL_RE = re.compile(r"dial tcp(?<!\wdial tcp) (\[[^\]]*\]|[^\s:\[]+):\d+")
_HOST_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("lookup ", _LOOKUP_RE),
    ("dial tcp ", _DIAL_RE),
    ("host ", _PULL_HOST_RE),
    ("://", _URL_HOST_RE),
)
_STATUS_RES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (
        (
            " unauthorized",
            " forbidden",
            " not found",
            " too many",
            " internal",
            " bad ",
            " service",
            " gateway",
            " proxy",
            " method",
            " request",
            " not ",
            " insufficient",
            " conflict",
        ),
        re.compile(
            r"([1-5](?<!\w.)\d\d) (?:unauthorized|forbidden|not found|too many requests|internal server error"
            r"|bad gateway|service unavailable|gateway time-?out|proxy authentication required|bad request"
            r"|method not allowed|request timeout|not implemented|insufficient storage|conflict|not acceptable)"
        ),
    ),
    (("status",), re.compile(r"status(?: code)?(?: \[[^\]]*\])?(?: from [^:]*)?:? (?:<[a-z-]*url>:? )?([1-5]\d\d)\b")),
    (("http ",), re.compile(r"http(?<!\whttp) ([1-5]\d\d)\b")),
    (("429", "50"), re.compile(r"((?:4(?=29)|5)(?<![\w.:/-].)\d\d)(?![\w.:/-])")),
)
_STATUS_DIGITS_RE = re.compile(r"[1-5]\d\d")
_PLATFORM_RE = re.compile(
    r"((?:linux(?<!\wlinux)|windows(?<!\wwindows)|darwin(?<!\wdarwin)|freebsd(?<!\wfreebsd))/[a-z0-9_]+(?:/v\d+)?)\b"
)
_ARCH_OS_RE = re.compile(r"for architecture ([a-z0-9_]+)(?:, variant \"?([a-z0-9]*)\"?)?, os ([a-z0-9]+)")


def _image_from(text: str, low: str) -> imageref.ImageRef | None:
    for needle, pattern in _IMAGE_RES:
        if needle not in low:
            continue
        for match in pattern.finditer(text):
            if pattern is _QUOTED_RE and not low.endswith(_IMAGE_WORDS, 0, match.start()):
                continue
            ref = imageref.try_parse(match.group(1))
            if ref is not None:
                return ref
    if "reading manifest" in low:
        found = _READING_MANIFEST_RE.search(text)
        if found:
            reference, repo = found.group(1), found.group(2)
            sep = "@" if ":" in reference else ":"
            return imageref.try_parse(f"{repo}{sep}{reference}")
    return None


def _status_from(masked_low: str) -> int | None:
    if _STATUS_DIGITS_RE.search(masked_low) is None:  # every status pattern holds one; most messages have none
        return None
    for needles, pattern in _STATUS_RES:
        for needle in needles:
            if needle in masked_low:
                for match in pattern.finditer(masked_low):
                    start = match.start(1)
                    if start == 0 or masked_low[start - 1] not in ".:/-":
                        return int(match.group(1))
                break
    return None


def _host_from(text: str, low: str) -> str | None:
    for needle, pattern in _HOST_RES:
        if needle in low:
            match = pattern.search(text)
            if match:
                return match.group(1).rstrip(".").lower()
    return None


def _platform_from(low: str) -> str | None:
    match = _PLATFORM_RE.search(low)
    if match:
        return match.group(1)
    match = _ARCH_OS_RE.search(low)
    if match:
        arch, variant, os_name = match.group(1), match.group(2), match.group(3)
        return f"{os_name}/{arch}/{variant}" if variant else f"{os_name}/{arch}"
    return None


def extract_facts(text: str, low: str, masked_low: str, cause: Cause) -> Facts:
    """Facts of one message: `text` normalised, `low` lowercased, `masked_low` masked; platform only for a mismatch."""
    ref = _image_from(text, low)
    registry = repository = reference = None
    if ref is not None:
        registry, repository, reference = ref.registry, ref.repository, ref.reference
    elif "/v2/" in low and (url := _REGISTRY_URL_RE.search(text)) is not None:
        registry = imageref.registry_key(url.group(1))
        repository, reference = url.group(2), url.group(3)
    else:
        host: re.Match[str] | None = _PULL_HOST_RE.search(text) if "host " in low else None
        if host is None and "service=" in low:
            host = _TOKEN_SERVICE_RE.search(text)
        if host is not None:
            registry = imageref.registry_key(host.group(1))
    return Facts(
        registry=registry,
        repository=repository,
        reference=reference,
        http_status=_status_from(masked_low),
        platform=_platform_from(low) if cause is Cause.PLATFORM_MISMATCH else None,
        host=_host_from(text, low),
    )
