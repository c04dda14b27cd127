"""What a fix needs from the cluster's RBAC, as SubjectAccessReview attributes, and how a refusal reads (issue 15).

Pure: no I/O. With `access.mode` `kubernetes` or `both`, the bot asks the API server whether the mapped identity may
do each of these before a proposal is stored, before it is approved and before it runs; it then runs them with that
identity impersonated. The list is every request the action makes as that identity (`bot.kube.writes`), so a review
that allows is not followed by a 403 half-way:
- delete a pod: get and delete that pod;
- link a pull secret: get and patch that ServiceAccount;
- write a pull secret from typed credentials: get that secret, then patch it, or create secrets when it is absent;
- copy a pull secret: the same in the target namespace, and get the source secret.
Snooze, mute and reading an unwatched namespace change nothing in the cluster; they need `list pods` there, the right
of someone who works in that namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.model import ActionKind

MODES = ("grants", "kubernetes", "both")


@dataclass(frozen=True, slots=True)
class AccessCheck:
    """One SubjectAccessReview's resource attributes."""

    verb: str
    resource: str
    namespace: str
    name: str | None = None
    group: str = ""

    def words(self) -> str:
        """The check in words: "delete pods in `shop`", "get secrets `pull` in `payments`"."""
        named = f" `{self.name}`" if self.name else ""
        return f"{self.verb} {self.resource}{named} in `{self.namespace}`"


def checks_for(
    action: ActionKind, namespace: str, target: str, params: Mapping[str, str], *, target_exists: bool
) -> tuple[AccessCheck, ...]:
    """The checks for a fix on `namespace/target` (`params` as stored with the proposal)."""
    if action is ActionKind.DELETE_POD:
        return (AccessCheck("delete", "pods", namespace, target), AccessCheck("get", "pods", namespace, target))
    if action is ActionKind.LINK_SECRET:
        return (
            AccessCheck("patch", "serviceaccounts", namespace, target),
            AccessCheck("get", "serviceaccounts", namespace, target),
        )
    if action is ActionKind.RECREATE_SECRET:
        write = (
            AccessCheck("patch", "secrets", namespace, target)
            if target_exists
            else AccessCheck("create", "secrets", namespace)
        )
        checks = [write, AccessCheck("get", "secrets", namespace, target)]
        if params.get("mode") == "copy":
            src_ns, slash, src = params.get("from", "").partition("/")
            checks.insert(0, AccessCheck("get", "secrets", src_ns if slash else "", src or None))
        return tuple(checks)
    return checks_for_direct(namespace)


def checks_for_direct(namespace: str) -> tuple[AccessCheck, ...]:
    """Snooze, mute, read: `list pods` in the namespace."""
    return (AccessCheck("list", "pods", namespace),)


def refusal(who: str, check: AccessCheck) -> str:
    """The refusal shown in Slack and stored in the audit: "`alice@example.com` may not delete pods in `prod`"."""
    return f"`{who}` may not {check.words()}"


def proposal_checks(
    action: ActionKind, namespace: str, target: str, params: Mapping[str, str]
) -> tuple[AccessCheck, ...]:
    """The checks of a stored proposal: whether its secret exists is what was pinned when it was proposed (the
    executor refuses anyway when the target changed since)."""
    exists = params.get("pin_uid", "absent") != "absent"
    return checks_for(action, namespace, target, params, target_exists=exists)
