"""Nearest-tag suggestions (pure)."""

from __future__ import annotations

import pytest

from bot.registry.tags import Version, edit_distance, nearest_tags, parse_version


@pytest.mark.parametrize(
    ("wanted", "tags", "expected"),
    [
        ("v1.2.3", ["1.2.3", "1.2.2", "1.2.4", "1.3.0", "latest"], ("1.2.3", "1.2.2", "1.2.4")),
        ("1.2.3", ["v1.2.3", "v1.2.2"], ("v1.2.3", "v1.2.2")),
        ("1.2.9", ["1.2.3", "1.2.2", "1.2.10", "1.3.0", "1.1.7"], ("1.2.10", "1.2.3", "1.2.2")),
        ("1.4", ["1.2", "1.5", "3.0.0"], ("1.5", "1.2")),
        ("lastest", ["latest", "main", "stable"], ("latest",)),
        ("latest", ["1.0", "2.1", "2.0"], ("2.1", "2.0", "1.0")),
        ("1.2.3-alpine", ["1.2.2-alpine", "1.2.3", "1.2.2"], ("1.2.2-alpine", "1.2.3", "1.2.2")),
        ("prod", ["1.0", "2.0"], ()),
        ("1.0", [], ()),
    ],
)
def test_nearest(wanted: str, tags: list[str], expected: tuple[str, ...]) -> None:
    """Suggestions rank v-prefix twins, then patch and minor neighbours, then small edit distances."""
    assert nearest_tags(wanted, tags) == expected


def test_never_suggests_the_wanted_tag_and_respects_limit() -> None:
    """The wanted tag itself is not a suggestion; the limit caps the answer."""
    tags = [f"1.0.{i}" for i in range(20)] + ["1.0.5"]
    out = nearest_tags("1.0.5", tags, limit=4)
    assert "1.0.5" not in out
    assert out == ("1.0.4", "1.0.6", "1.0.3", "1.0.7")


def test_parse_version() -> None:
    """Versions parse with an optional v, missing parts as 0, and a kept suffix."""
    assert parse_version("v1.2.3-rc1") == Version(1, 2, 3, "-rc1")
    assert parse_version("7") == Version(7, 0, 0, "")
    assert parse_version("latest") is None


def test_edit_distance() -> None:
    """Levenshtein with an early stop above the limit."""
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("a", "abcdefgh", limit=2) == 3
