"""Who may do what: grants from `AccessSettings` checked against a Slack user and the user groups they belong to.

Pure: no I/O. A grant maps a principal (a Slack user id `U…`/`W…`, a user-group id `S…`, or `*` for everyone) to
entries `"[cluster/]namespace:action"`, e.g. `"shop:delete_pod"`, `"*:snooze"`, `"prod/*:*"`. Each part is a shell
glob over the WHOLE name: `*` matches any run of characters, including none and `-`, so `prod*` covers `prod`,
`prod-eu` and `production` alike; write `prod` and `prod-*` for "prod and its family" only. Names are lowercase
Kubernetes names; a grant with other characters is refused when the settings load (docs/SECURITY.md).

Actions are the `ActionKind` values (`delete_pod`, `recreate_secret`, `link_secret`, `snooze`, `mute`) and `read`;
a grant for a fix is the right to APPROVE (and so to run) it, and to test typed credentials in the form; copying a
secret needs the grant on the source namespace too. Anyone may propose a fix, re-diagnose or read (`diagnose`,
`scan`, `status`, `help`) in the namespaces the bot watches: proposing changes nothing until someone allowed
approves, and what is read there is what the bot posts in its threads anyway. Reading a namespace the bot does not
watch (`kube.exclude_namespaces`, or outside `kube.include_namespaces`) needs a `read` grant for it.

The resolution of group membership (Slack's `usergroups.users.list`) is done by the caller, which passes every
principal the user counts as (`principals`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.identity import KubeIdentity
from bot.model import ActionKind, Proposal, ProposalStatus

OPEN_ACTIONS: frozenset[str] = frozenset({"rediagnose", "diagnose", "scan", "status", "help", "propose"})
EVERYONE = "*"


@dataclass(frozen=True, slots=True)
class Grant:
    """One parsed grant entry."""

    cluster: re.Pattern[str]
    namespace: re.Pattern[str]
    action: re.Pattern[str]

    def matches(self, cluster: str, namespace: str, action: str) -> bool:
        """Whether this grant covers `action` in `cluster/namespace`."""
        return bool(
            self.cluster.fullmatch(cluster) and self.namespace.fullmatch(namespace) and self.action.fullmatch(action)
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this user do this?": `reason` is safe to show the user and to store in the audit.

    With the cluster asked (access.mode kubernetes or both, bot.flows.authority): the identity it was asked about,
    which the action then impersonates, and the audit parameters naming it and the review's answer."""

    allowed: bool
    reason: str
    identity: KubeIdentity | None = None
    params: dict[str, str] = field(default_factory=dict)


def _glob(part: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in part.split("*")))


GRANT_ACTIONS: frozenset[str] = frozenset({"delete_pod", "recreate_secret", "link_secret", "snooze", "mute", "read"})
_GRANT_PART = re.compile(r"[a-z0-9*._-]+", re.ASCII)
_GRANT_ACTION = re.compile(r"[a-z_*]+", re.ASCII)


def parse_grant(entry: str) -> Grant:
    """Parse `"[cluster/]namespace:action"`; raises ValueError naming what is wrong."""
    scope, colon, action = entry.strip().rpartition(":")
    if not colon or not scope or not action:
        raise ValueError(f"grant {entry!r} must look like 'namespace:action' or 'cluster/namespace:action'")
    cluster, slash, namespace = scope.rpartition("/")
    for part in (namespace, cluster) if slash else (namespace,):
        if not _GRANT_PART.fullmatch(part):
            raise ValueError(f"grant {entry!r}: {part!r} is not a lowercase name or a '*' glob")
    if not _GRANT_ACTION.fullmatch(action) or not any(_glob(action).fullmatch(a) for a in GRANT_ACTIONS):
        raise ValueError(f"grant {entry!r}: {action!r} names no action ({', '.join(sorted(GRANT_ACTIONS))}, or *)")
    return Grant(_glob(cluster if slash else "*"), _glob(namespace), _glob(action))


def is_group(principal: str) -> bool:
    """Slack user-group ids start with 'S'."""
    return principal.startswith("S")


class AccessPolicy:
    """The grants of `AccessSettings`, parsed once; answers `allows` and `may_approve`."""

    def __init__(self, grants: Mapping[str, Sequence[str]], *, two_person_rule: bool = False) -> None:
        self._grants: dict[str, tuple[Grant, ...]] = {
            principal: tuple(parse_grant(e) for e in entries) for principal, entries in grants.items()
        }
        self.two_person_rule = two_person_rule

    @property
    def groups(self) -> tuple[str, ...]:
        """The user-group ids that appear in the grants (the only groups worth resolving)."""
        return tuple(sorted(p for p in self._grants if is_group(p)))

    def allows(self, principals: Iterable[str], cluster: str, namespace: str, action: str) -> bool:
        """Whether any of `principals` (a user id and their groups) holds a grant for `action` there."""
        if action in OPEN_ACTIONS:
            return True
        for principal in {*principals, EVERYONE}:
            if any(g.matches(cluster, namespace, action) for g in self._grants.get(principal, ())):
                return True
        return False

    def may_act(self, principals: Iterable[str], cluster: str, namespace: str, action: str) -> Decision:
        """A direct action (snooze, mute): allowed or a refusal naming the missing grant."""
        if self.allows(principals, cluster, namespace, action):
            return Decision(True, "allowed")
        return Decision(False, f"refused: no grant for {action} in {cluster}/{namespace}")

    def may_approve(
        self, approver: str, principals: Iterable[str], proposal: Proposal, now: datetime, *, grants: bool = True
    ) -> Decision:
        """Whether `approver` may approve `proposal` now: pending, not expired, granted (unless `grants` is False:
        the cluster alone decides, access.mode kubernetes), two-person rule."""
        if proposal.status is not ProposalStatus.PENDING:
            return Decision(False, f"refused: the proposal is {proposal.status.value}, not pending")
        if proposal.expires_at <= now:
            return Decision(False, "refused: the proposal has expired")
        action = proposal.action.value
        principals = tuple(principals)
        if grants and not self.allows(principals, proposal.cluster, proposal.namespace, action):
            return Decision(False, f"refused: no grant for {action} in {proposal.cluster}/{proposal.namespace}")
        source = copy_source_namespace(proposal)
        if grants and source is not None and not self.allows(principals, proposal.cluster, source, action):
            return Decision(
                False,
                f"refused: no grant for {action} in {proposal.cluster}/{source} (the secret is copied from there)",
            )
        if self.two_person_rule and approver == proposal.requested_by:
            return Decision(False, "refused: two-person rule, the requester cannot approve their own proposal")
        return Decision(True, "approved")

    def may_reject(self, user: str, principals: Iterable[str], proposal: Proposal) -> Decision:
        """The requester may withdraw their proposal; otherwise rejecting needs the same grant as approving."""
        if proposal.status is not ProposalStatus.PENDING:
            return Decision(False, f"refused: the proposal is {proposal.status.value}, not pending")
        if user == proposal.requested_by:
            return Decision(True, "withdrawn by the requester")
        if self.allows(principals, proposal.cluster, proposal.namespace, proposal.action.value):
            return Decision(True, "rejected")
        action = proposal.action.value
        return Decision(False, f"refused: no grant for {action} in {proposal.cluster}/{proposal.namespace}")


def copy_source_namespace(proposal: Proposal) -> str | None:
    """The namespace a recreate-secret copies from (its `from` parameter), or None for other proposals.

    Copying takes a secret out of that namespace, so approving it needs the grant there as well as in the target
    namespace; an unreadable `from` gives a name no grant can match.
    """
    if proposal.action is not ActionKind.RECREATE_SECRET or proposal.params.get("mode") != "copy":
        return None
    namespace, slash, _ = proposal.params.get("from", "").partition("/")
    return namespace if slash and namespace else "\0invalid"
