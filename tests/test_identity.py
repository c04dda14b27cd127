"""Slack users as Kubernetes identities (bot.identity) and what a fix needs from RBAC (bot.access_checks): pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.access_checks import AccessCheck, checks_for, proposal_checks, refusal
from bot.identity import IdentityMap, KubeIdentity, SlackProfile, Unmapped
from bot.model import ActionKind
from bot.settings import AccessSettings, IdentitySettings, MappedIdentity

CONFIRMED = SlackProfile("Alice@Example.COM", True)


def test_a_confirmed_email_maps_through_the_template() -> None:
    assert IdentityMap().map("U1", CONFIRMED) == KubeIdentity("alice@example.com", (), "email")
    oidc = IdentityMap(email_template="oidc:{email}").map("U1", CONFIRMED)
    assert isinstance(oidc, KubeIdentity) and oidc.user == "oidc:alice@example.com"
    local = IdentityMap(email_template="{local}@{domain}/corp").map("U1", CONFIRMED)
    assert isinstance(local, KubeIdentity) and local.user == "alice@example.com/corp"


@pytest.mark.parametrize(
    ("profile", "why"),
    [
        (SlackProfile("alice@example.com", False), "not confirmed"),
        (SlackProfile(None, True), "no email"),
        (SlackProfile("alice@example.com", True, deleted=True), "deactivated"),
        (SlackProfile("alice@example.com", True, bot=True), "bot"),
        (SlackProfile("alice@example.com\nbob@example.com", True), "not a plain address"),
        (SlackProfile("system:admin@x.io", True), "not a plain address"),
        (None, "did not answer"),
    ],
)
def test_what_does_not_map(profile: SlackProfile | None, why: str) -> None:
    found = IdentityMap().map("U1", profile)
    assert isinstance(found, Unmapped) and why in found.reason


def test_a_template_giving_a_system_name_does_not_map() -> None:
    found = IdentityMap(email_template="system:{local}").map("U1", CONFIRMED)
    assert isinstance(found, Unmapped)


def test_the_table_wins_and_slack_groups_add_kubernetes_groups() -> None:
    mapping = IdentityMap(users={"U1": ("ops-robot", ("platform",))}, groups={"S1": ["sre", "oncall"], "S2": ["sre"]})
    assert mapping.slack_groups == ("S1", "S2")
    assert not mapping.needs_profile("U1") and mapping.needs_profile("U2")
    assert mapping.map("U1", None, ["S2"]) == KubeIdentity("ops-robot", ("platform", "sre"), "table")
    assert mapping.map("U2", CONFIRMED, ["S2", "S1", "S9"]) == KubeIdentity(
        "alice@example.com", ("sre", "oncall"), "email"
    )
    assert IdentityMap(email_template="").map("U2", CONFIRMED) == Unmapped(
        "no Kubernetes identity is configured for this Slack user"
    )


def test_review_groups_carry_system_authenticated_as_impersonation_does() -> None:
    assert KubeIdentity("a", ("sre",)).review_groups == ("sre", "system:authenticated")
    assert KubeIdentity("a", ("system:authenticated",)).review_groups == ("system:authenticated",)


def test_slack_profile_from_a_users_info_object() -> None:
    user = {"id": "U1", "is_email_confirmed": True, "profile": {"email": "a@b.io"}, "deleted": False}
    assert SlackProfile.from_user(user) == SlackProfile("a@b.io", True)
    assert SlackProfile.from_user({"profile": {"email": "a@b.io"}}) == SlackProfile("a@b.io", False)  # not said
    assert SlackProfile.from_user({"profile": "junk", "is_email_confirmed": "yes"}) == SlackProfile(None, False)


@pytest.mark.parametrize(
    "bad",
    [
        {"email_template": "{user}"},
        {"email_template": "static-name"},
        {"email_template": "{email"},
        {"users": {"alice": {"user": "alice"}}},
        {"users": {"U1": {"user": "system:admin"}}},
        {"users": {"U1": {"user": "alice", "groups": ["system:masters"]}}},
        {"groups": {"S1": ["system:masters"]}},
        {"groups": {"U1": ["sre"]}},
        {"users": {"U1": {"user": " alice"}}},
        {"ttl_s": -1},
    ],
)
def test_bad_identity_settings_stop_the_settings_loading(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IdentitySettings.model_validate(bad)


def test_settings_modes() -> None:
    assert AccessSettings().mode == "grants"
    assert AccessSettings(mode="both", identity=IdentitySettings(users={"U1": MappedIdentity(user="a")})).mode == "both"
    with pytest.raises(ValidationError):
        AccessSettings(mode="kube")


def test_the_checks_of_each_fix_are_every_request_it_makes() -> None:
    assert checks_for(ActionKind.DELETE_POD, "shop", "web-1", {}, target_exists=True) == (
        AccessCheck("delete", "pods", "shop", "web-1"),
        AccessCheck("get", "pods", "shop", "web-1"),
    )
    assert [c.verb for c in checks_for(ActionKind.LINK_SECRET, "shop", "default", {}, target_exists=True)] == [
        "patch",
        "get",
    ]
    copy = {"mode": "copy", "from": "ci/pull"}
    assert checks_for(ActionKind.RECREATE_SECRET, "shop", "pull", copy, target_exists=False) == (
        AccessCheck("get", "secrets", "ci", "pull"),
        AccessCheck("create", "secrets", "shop"),
        AccessCheck("get", "secrets", "shop", "pull"),
    )
    assert proposal_checks(ActionKind.RECREATE_SECRET, "shop", "pull", {"mode": "credentials", "pin_uid": "u1"})[
        0
    ] == AccessCheck("patch", "secrets", "shop", "pull")


def test_a_refusal_names_the_identity_and_what_it_lacked() -> None:
    check = AccessCheck("delete", "pods", "prod")
    assert refusal("alice@example.com", check) == "`alice@example.com` may not delete pods in `prod`"
