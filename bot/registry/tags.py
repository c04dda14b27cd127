"""Nearest-tag suggestions for a tag the registry does not hold. Pure.

Ranking, best first: the same tag with a `v` prefix added or removed (or another letter case); for a
semantic version, the same major.minor with the nearest patch, then the same major with the nearest minor;
then tags within a small edit distance. `latest` missing gets the highest versions on offer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_VERSION_RE = re.compile(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?P<suffix>[-+._].*)?$")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A loosely parsed semantic version: `v1.2.3-alpine` -> (1, 2, 3, "-alpine")."""

    major: int
    minor: int
    patch: int
    suffix: str = ""


def parse_version(tag: str) -> Version | None:
    """Read `tag` as major[.minor[.patch]][suffix] with an optional `v`, or None."""
    m = _VERSION_RE.match(tag)
    if m is None:
        return None
    major, minor, patch = (int(g) if g is not None else 0 for g in m.group(1, 2, 3))
    return Version(major, minor, patch, m.group("suffix") or "")


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance between `a` and `b`; stops early above `limit` (returns limit + 1)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _strip_v(tag: str) -> str:
    return tag[1:] if tag[:1] in ("v", "V") and tag[1:2].isdigit() else tag


def _rank(wanted: str, wanted_version: Version | None, tag: str, limit: int) -> tuple[int, float, str] | None:
    """Sort key of one candidate (lower is nearer), or None when it is not near at all."""
    if _strip_v(tag).lower() == _strip_v(wanted).lower():
        return (0, 0.0, tag)
    version = parse_version(tag)
    if wanted_version is not None and version is not None:
        # Another variant (`-alpine` vs none) of the same line ranks after the same variant's neighbours.
        variant = 0.0 if version.suffix == wanted_version.suffix else 1.75
        if (version.major, version.minor) == (wanted_version.major, wanted_version.minor):
            # Same major.minor: nearest patch; on a tie the lower one (the one that existed before).
            above = 0.5 if version.patch > wanted_version.patch else 0.0
            return (1, abs(version.patch - wanted_version.patch) + above + variant, tag)
        if version.major == wanted_version.major and not variant:
            return (2, abs(version.minor - wanted_version.minor) * 1000 - version.patch / 1000, tag)
    distance = edit_distance(wanted, tag, limit)
    if distance <= limit:
        return (3, float(distance), tag)
    return None


def nearest_tags(wanted: str, tags: Iterable[str], limit: int = 3) -> tuple[str, ...]:
    """Up to `limit` tags of `tags` nearest to `wanted`, best first (never `wanted` itself)."""
    candidates = [t for t in dict.fromkeys(tags) if t and t != wanted]
    wanted_version = parse_version(wanted)
    max_distance = max(2, len(wanted) // 3)
    ranked = sorted(key for t in candidates if (key := _rank(wanted, wanted_version, t, max_distance)) is not None)
    out = [key[2] for key in ranked]
    if not out and wanted == "latest":
        versions = sorted(((v, t) for t in candidates if (v := parse_version(t)) is not None), reverse=True)
        out = [t for _, t in versions]
    return tuple(out[:limit])


def near_names(repository: str) -> list[str]:
    """Likely intended spellings of a repository's last component: adjacent letters swapped (`ngnix` ->
    `nginx`), one doubled letter dropped, one letter dropped; nearest first, without duplicates."""
    head, slash, last = repository.rpartition("/")
    prefix = head + slash
    out: list[str] = []
    for i in range(len(last) - 1):
        if last[i] != last[i + 1]:
            out.append(last[:i] + last[i + 1] + last[i] + last[i + 2 :])
    for i in range(len(last) - 1):
        if last[i] == last[i + 1]:
            out.append(last[:i] + last[i + 1 :])
    for i in range(len(last)):
        out.append(last[:i] + last[i + 1 :])
    return [prefix + n for n in dict.fromkeys(out) if n and n != last and n[0].isalnum() and n[-1].isalnum()]


def nearest_names(wanted: str, names: Iterable[str], limit: int = 3) -> tuple[str, ...]:
    """The names within edit distance 2 of `wanted` (ties by name), nearest first."""
    ranked = []
    for name in names:
        d = edit_distance(wanted, name, 3)
        if d <= 2:
            ranked.append((d, name))
    return tuple(n for _, n in sorted(ranked)[:limit])
