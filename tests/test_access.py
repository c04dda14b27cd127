"""The access policy (pure) and the credential vault: grants with wildcards and groups, two-person rule, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.access import AccessPolicy, parse_grant
from bot.model import ActionKind, Proposal, ProposalStatus
from bot.vault import CredentialVault, HeldCredentials

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def proposal(**kw: object) -> Proposal:
    values: dict[str, object] = {
        "action": ActionKind.DELETE_POD,
        "cluster": "prod",
        "namespace": "shop",
        "target": "web-1",
        "params": {},
        "requested_by": "U_REQ",
        "requested_by_name": "req",
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=30),
    }
    values.update(kw)
    return Proposal(**values)  # type: ignore[arg-type]


POLICY = AccessPolicy(
    {
        "U_ADMIN": ["*:*"],
        "S_OPS": ["shop:delete_pod", "prod/pay-*:recreate_secret"],
        "U_EDGE": ["edge/*:link_secret"],
        "*": ["*:snooze"],
    }
)


@pytest.mark.parametrize(
    ("principals", "cluster", "namespace", "action", "allowed"),
    [
        ({"U_ADMIN"}, "any", "kube-system", "delete_pod", True),
        ({"U_X", "S_OPS"}, "prod", "shop", "delete_pod", True),
        ({"U_X", "S_OPS"}, "prod", "shop", "recreate_secret", False),
        ({"U_X", "S_OPS"}, "prod", "pay-eu", "recreate_secret", True),
        ({"U_X", "S_OPS"}, "edge", "pay-eu", "recreate_secret", False),
        ({"U_EDGE"}, "edge", "shop", "link_secret", True),
        ({"U_EDGE"}, "prod", "shop", "link_secret", False),
        ({"U_X"}, "prod", "shop", "snooze", True),  # "*" grants everyone
        ({"U_X"}, "prod", "shop", "mute", False),
        ({"U_X"}, "prod", "shop", "rediagnose", True),  # reading is open
    ],
)
def test_grants(principals: set[str], cluster: str, namespace: str, action: str, allowed: bool) -> None:
    """Grants match by user, group and '*', with wildcards in cluster, namespace and action."""
    assert POLICY.allows(principals, cluster, namespace, action) is allowed


def test_groups_named_in_grants() -> None:
    """Only user-group ids are worth resolving."""
    assert POLICY.groups == ("S_OPS",)


def test_bad_grant_is_refused() -> None:
    """A grant without ':' is a configuration error."""
    with pytest.raises(ValueError, match="namespace:action"):
        parse_grant("shop")


def test_wildcard_is_not_a_regex() -> None:
    """Grant text is a glob, not a regular expression."""
    grant = parse_grant("sh.p:delete_pod")
    assert grant.matches("c", "sh.p", "delete_pod") and not grant.matches("c", "shop", "delete_pod")


def test_approval_rules() -> None:
    """Pending and unexpired, granted, and (with the rule) not the requester."""
    p = proposal()
    assert POLICY.may_approve("U_ADMIN", {"U_ADMIN"}, p, NOW).allowed
    assert not POLICY.may_approve("U_X", {"U_X"}, p, NOW).allowed
    assert "expired" in POLICY.may_approve("U_ADMIN", {"U_ADMIN"}, p, NOW + timedelta(hours=1)).reason
    done = proposal(status=ProposalStatus.APPROVED)
    assert "not pending" in POLICY.may_approve("U_ADMIN", {"U_ADMIN"}, done, NOW).reason
    strict = AccessPolicy({"U_REQ": ["*:*"], "U_ADMIN": ["*:*"]}, two_person_rule=True)
    assert "two-person" in strict.may_approve("U_REQ", {"U_REQ"}, p, NOW).reason
    assert strict.may_approve("U_ADMIN", {"U_ADMIN"}, p, NOW).allowed


def test_reject_rules() -> None:
    """The requester may withdraw; others need the approving grant."""
    p = proposal()
    assert POLICY.may_reject("U_REQ", {"U_REQ"}, p).allowed
    assert not POLICY.may_reject("U_X", {"U_X"}, p).allowed
    assert POLICY.may_reject("U_Y", {"U_Y", "S_OPS"}, p).allowed


def test_vault_holds_take_once_and_expires() -> None:
    """Credentials are taken once, expire, and never show in repr."""
    now = [0.0]
    vault = CredentialVault(ttl_s=10, clock=lambda: now[0])
    held = HeldCredentials("reg.example.com", "robot", "hunter2-secret", "abc123")
    vault.put(1, held)
    vault.put(2, held)
    assert "hunter2" not in repr(held) and "robot" not in repr(held) and "hunter2" not in repr(vault)
    assert vault.take(1) == held and vault.take(1) is None
    now[0] = 11
    assert not vault.holds(2) and len(vault) == 0
