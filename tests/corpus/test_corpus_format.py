"""Format checks for the message corpora under tests/corpus/ (contract: docs/CONTRACTS.md)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.model import MESSAGE_CAUSES

CORPUS_DIR = Path(__file__).parent
CORPORA = sorted(CORPUS_DIR.glob("*.jsonl"))
CAUSE_IDS = frozenset(str(cause) for cause in MESSAGE_CAUSES)
MIN_PER_CAUSE = 5
MIN_COMMON = 15
COMMON_CAUSES = (
    "tag_not_found",
    "repo_not_found_or_no_access",
    "auth_failed",
    "rate_limited",
    "dns_failure",
    "network_timeout",
    "tls_cert",
)


def load(path: Path) -> list[dict[str, Any]]:
    """Parse one JSON Lines corpus, failing with the line number on a bad line."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{number}: blank line"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - only on a broken file
            pytest.fail(f"{path.name}:{number}: not JSON: {exc}")
        assert isinstance(row, dict), f"{path.name}:{number}: not an object"
        rows.append(row)
    return rows


def test_corpora_exist() -> None:
    """Both the public corpus and the containerd corpus are committed."""
    names = {path.name for path in CORPORA}
    assert {"public.jsonl", "containerd.jsonl"} <= names


@pytest.mark.parametrize("path", CORPORA, ids=lambda p: p.name)
def test_every_line_has_the_contract_fields(path: Path) -> None:
    """Each line has a non-empty message, a contract cause id and a source."""
    rows = load(path)
    assert rows, f"{path.name} is empty"
    for number, row in enumerate(rows, start=1):
        where = f"{path.name}:{number}"
        assert isinstance(row.get("message"), str), where
        assert row["message"].strip() == row["message"] != "", where
        assert row.get("cause") in CAUSE_IDS, f"{where}: cause {row.get('cause')!r}"
        assert isinstance(row.get("source"), str), where
        assert row["source"].strip(), where
        reason = row.get("event_reason")
        assert reason is None or (isinstance(reason, str) and reason), where


@pytest.mark.parametrize("path", CORPORA, ids=lambda p: p.name)
def test_no_duplicate_messages(path: Path) -> None:
    """No message appears twice in one corpus."""
    counts = Counter(row["message"] for row in load(path))
    duplicates = [message for message, count in counts.items() if count > 1]
    assert duplicates == []


def test_public_corpus_covers_every_cause() -> None:
    """Every message cause has at least five public examples; the common ones fifteen."""
    counts = Counter(row["cause"] for row in load(CORPUS_DIR / "public.jsonl"))
    thin = {cause: counts[cause] for cause in CAUSE_IDS if counts[cause] < MIN_PER_CAUSE}
    assert thin == {}
    thin_common = {cause: counts[cause] for cause in COMMON_CAUSES if counts[cause] < MIN_COMMON}
    assert thin_common == {}


def test_public_sources_can_be_found() -> None:
    """Each public source is a URL or a repository path a reader can open."""
    for row in load(CORPUS_DIR / "public.jsonl"):
        source = row["source"]
        assert source.startswith("https://") or ":" in source, source


def test_containerd_corpus_is_kubelet_shaped() -> None:
    """Every containerd line is what kubelet writes: the Failed event wrapping a gRPC status."""
    rows = load(CORPUS_DIR / "containerd.jsonl")
    assert len(rows) >= 12
    for row in rows:
        message = row["message"]
        if row.get("event_reason") == "Failed":
            assert message.startswith('Failed to pull image "'), message
            assert '": rpc error: code = ' in message, message
        assert "containerd" in row["source"]
