"""Slack users as Kubernetes identities (issue 15): who a Slack user is when the cluster itself decides.

Pure: no I/O. The caller fetches the Slack profile (`users.info`) and the user's Slack user groups and passes them in.

A Slack user maps to a Kubernetes user name and groups, in this order:
1. an explicit table entry (`access.identity.users`: Slack user id -> user and groups) wins;
2. otherwise the email on the Slack profile, only when Slack marks it confirmed (`is_email_confirmed`), through
   `access.identity.email_template` (`{email}`, `{local}`, `{domain}`; e.g. `oidc:{email}` for an API server whose
   `--oidc-username-prefix` is `oidc:`); an empty template turns email mapping off;
3. the Slack user groups of `access.identity.groups` (Slack group id -> Kubernetes groups) add their groups.
Deleted users, bots and app users never map. A user who does not map can read but not act.

The user and groups are exactly what the bot sends as `Impersonate-User` / `Impersonate-Group`. The API server adds
`system:authenticated` to an impersonated non-anonymous user (apiserver `filters/impersonation.go`), while a
SubjectAccessReview evaluates only the groups it is given, so `review_groups` adds it for the review: the review
then asks about the same identity the impersonated request will carry.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

AUTHENTICATED = "system:authenticated"
TEMPLATE_FIELDS = frozenset({"email", "local", "domain"})
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", re.ASCII)
# Names the bot never impersonates, whatever the settings say: cluster-admin by group, and the system's own users.
FORBIDDEN_GROUPS = frozenset({"system:masters", "system:nodes", "system:unauthenticated"})
_SLACK_USER = re.compile(r"[UW][A-Z0-9_]{1,30}", re.ASCII)
_SLACK_GROUP = re.compile(r"S[A-Z0-9_]{1,30}", re.ASCII)


@dataclass(frozen=True, slots=True)
class KubeIdentity:
    """The Kubernetes user a Slack user acts as, and how it was found ("table" or "email")."""

    user: str
    groups: tuple[str, ...] = ()
    source: str = "table"

    @property
    def review_groups(self) -> tuple[str, ...]:
        """The groups an impersonated request carries: these plus `system:authenticated`."""
        return self.groups if AUTHENTICATED in self.groups else (*self.groups, AUTHENTICATED)

    def audit(self) -> dict[str, str]:
        """The audit parameters naming this identity."""
        return {"k8s_user": self.user, "k8s_groups": ",".join(self.groups) or "-", "k8s_identity_from": self.source}


@dataclass(frozen=True, slots=True)
class Unmapped:
    """No Kubernetes identity for this Slack user; `reason` is safe to show them and to store."""

    reason: str

    def audit(self) -> dict[str, str]:
        """The audit parameters of a failed mapping."""
        return {"k8s_user": "-", "k8s_unmapped": self.reason}


@dataclass(frozen=True, slots=True)
class SlackProfile:
    """What `users.info` says about a user that matters here."""

    email: str | None
    email_confirmed: bool
    deleted: bool = False
    bot: bool = False

    @staticmethod
    def from_user(user: Mapping[str, object]) -> SlackProfile:
        """Read a `users.info` user object (fields absent or of the wrong type count as not given)."""
        profile = user.get("profile")
        email = profile.get("email") if isinstance(profile, Mapping) else None
        return SlackProfile(
            email=email if isinstance(email, str) and email else None,
            email_confirmed=user.get("is_email_confirmed") is True,
            deleted=user.get("deleted") is True,
            bot=user.get("is_bot") is True or user.get("is_app_user") is True,
        )


def check_template(template: str) -> str:
    """Raise ValueError unless `template` is empty or uses only {email}, {local} and {domain}, at least one."""
    if not template:
        return template
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"email_template {template!r} is not a template: {exc}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown or not fields:
        raise ValueError(f"email_template {template!r} may use {{email}}, {{local}} and {{domain}}, and must use one")
    return template


def check_user_name(name: str) -> str:
    """Raise ValueError for a user name the bot must never impersonate (empty, `system:` names)."""
    if not name or name != name.strip() or name.startswith("system:") or len(name) > 253:
        raise ValueError(f"{name!r} cannot be a mapped Kubernetes user (empty, padded, too long or a system: name)")
    return name


def check_group_name(name: str) -> str:
    """Raise ValueError for a group the bot must never impersonate (system:masters and the like)."""
    if not name or name != name.strip() or name in FORBIDDEN_GROUPS or len(name) > 253:
        raise ValueError(f"{name!r} cannot be a mapped Kubernetes group")
    return name


def check_slack_user(user_id: str) -> str:
    """Raise ValueError unless `user_id` looks like a Slack user id."""
    if not _SLACK_USER.fullmatch(user_id):
        raise ValueError(f"{user_id!r} is not a Slack user id (U... or W...)")
    return user_id


def check_slack_group(group_id: str) -> str:
    """Raise ValueError unless `group_id` looks like a Slack user-group id."""
    if not _SLACK_GROUP.fullmatch(group_id):
        raise ValueError(f"{group_id!r} is not a Slack user-group id (S...)")
    return group_id


class IdentityMap:
    """The mapping settings, checked once; `map` turns what Slack says about a user into an identity."""

    def __init__(
        self,
        *,
        email_template: str = "{email}",
        users: Mapping[str, tuple[str, Sequence[str]]] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.email_template = check_template(email_template)
        self._users = {
            check_slack_user(uid): (check_user_name(user), tuple(check_group_name(g) for g in gs))
            for uid, (user, gs) in (users or {}).items()
        }
        self._groups = {
            check_slack_group(sid): tuple(check_group_name(g) for g in gs) for sid, gs in (groups or {}).items()
        }

    @property
    def slack_groups(self) -> tuple[str, ...]:
        """The Slack user groups whose membership adds Kubernetes groups (the only ones worth resolving)."""
        return tuple(sorted(self._groups))

    def needs_profile(self, user_id: str) -> bool:
        """Whether the Slack profile is needed (no table entry for this user)."""
        return user_id not in self._users

    def map(self, user_id: str, profile: SlackProfile | None, member_of: Iterable[str] = ()) -> KubeIdentity | Unmapped:
        """The identity of `user_id`; `profile` is None when Slack could not be asked."""
        if profile is not None and (profile.deleted or profile.bot):
            return Unmapped("the Slack account is deactivated or a bot")
        extra = tuple(dict.fromkeys(g for sid in sorted(set(member_of)) for g in self._groups.get(sid, ())))
        if user_id in self._users:
            user, groups = self._users[user_id]
            return KubeIdentity(user, tuple(dict.fromkeys((*groups, *extra))), "table")
        if not self.email_template:
            return Unmapped("no Kubernetes identity is configured for this Slack user")
        if profile is None:
            return Unmapped("Slack did not answer who this user is (users.info); try again")
        if profile.email is None:
            return Unmapped("the Slack profile has no email the bot may read (users:read.email)")
        if not profile.email_confirmed:
            return Unmapped("the email on the Slack profile is not confirmed")
        if not _EMAIL.fullmatch(profile.email):
            return Unmapped("the email on the Slack profile is not a plain address")
        email = profile.email.lower()
        local, _, domain = email.partition("@")
        user = self.email_template.format(email=email, local=local, domain=domain)
        try:
            check_user_name(user)
        except ValueError:
            return Unmapped("the email does not give a usable Kubernetes user name")
        return KubeIdentity(user, extra, "email")
