"""The pure audit chain: hashing, verification of tampered chains, secret detection and error scrubbing."""

from __future__ import annotations

import dataclasses

import pytest

from bot.store.audit import (
    GENESIS_HASH,
    check_params,
    key_looks_secret,
    make_record,
    scrub_error,
    verify_chain,
)
from tests.store.factories import audit_entry


def _chain(n: int) -> list:  # type: ignore[type-arg]
    records, prev = [], GENESIS_HASH
    for i in range(n):
        record = make_record(audit_entry(i), i + 1, prev)
        records.append(record)
        prev = record.hash
    return records


def test_hash_covers_the_id_and_every_field() -> None:
    """Changing any field, or the id, changes the hash."""
    base = make_record(audit_entry(1), 1, GENESIS_HASH)
    assert make_record(audit_entry(1), 2, GENESIS_HASH).hash != base.hash
    for change in ({"result": "error"}, {"params": {"n": "2"}}, {"actor_id": "U2"}, {"proposal_id": 4}):
        assert make_record(dataclasses.replace(audit_entry(1), **change), 1, GENESIS_HASH).hash != base.hash


def test_intact_chain_verifies() -> None:
    """A chain and its head agree."""
    chain = _chain(5)
    verdict = verify_chain(chain, (5, chain[-1].hash))
    assert verdict.ok and verdict.checked == 5


def test_tampering_is_located() -> None:
    """Edited, missing, reordered and truncated chains each name the first bad row."""
    chain = _chain(5)
    head = (5, chain[-1].hash)
    edited = [*chain[:2], dataclasses.replace(chain[2], entry=audit_entry(9)), *chain[3:]]
    assert verify_chain(edited, head).first_bad_id == 3
    assert verify_chain([*chain[:2], *chain[3:]], head).first_bad_id == 4
    assert verify_chain([chain[0], chain[2], chain[1], *chain[3:]], head).first_bad_id == 3
    truncated = verify_chain(chain[:4], head)
    assert (truncated.ok, truncated.first_bad_id) == (False, 5)
    assert not verify_chain(chain, None).ok


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("dockerPassword", True),
        ("api_token", True),
        ("auth", True),
        ("Authorization", True),
        (".dockerconfigjson", True),
        ("secret_value", True),
        ("secretData", True),
        ("credentials", True),
        ("secret", False),  # the name of a Secret object, e.g. "regcred"
        ("secret_name", False),
        ("author", False),
        ("namespace", False),
        ("server", False),
        ("username", False),
    ],
)
def test_key_looks_secret(key: str, secret: bool) -> None:
    """Keys naming credentials are caught; names of secrets and ordinary keys are not."""
    assert key_looks_secret(key) is secret


def test_check_params_never_echoes_the_value() -> None:
    """The refusal names the key but not the value."""
    with pytest.raises(ValueError, match="password") as raised:
        check_params({"password": "hunter2-very-secret"})
    assert "hunter2" not in str(raised.value)
    check_params({"secret": "regcred", "server": "ghcr.io", "username": "bot"})


@pytest.mark.parametrize(
    ("error", "leak"),
    [
        ("invalid_auth xoxb-123456789-abcdef", "123456789-abcdef"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
        ("connect to https://bot:s3cr3tpass@hooks.example/x failed", "s3cr3tpass"),
        ("password=hunter2 rejected", "hunter2"),
    ],
)
def test_scrub_error(error: str, leak: str) -> None:
    """Error texts lose their credentials before they are stored."""
    scrubbed = scrub_error(error)
    assert leak not in scrubbed and "<redacted>" in scrubbed


def test_scrub_error_bounds_length() -> None:
    """Long errors are cut."""
    assert len(scrub_error("x" * 10_000)) == 500
