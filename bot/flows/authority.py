"""The cluster as the authority on who may act (issue 15): Slack users mapped to Kubernetes identities, checked by
SubjectAccessReview on this bot's cluster.

`access.mode`:
- `grants`: the bot's grants decide (bot.access) and fixes run as the bot; nothing here is asked;
- `kubernetes`: the mapped identity must be allowed by the API server, for every request the fix makes
  (bot.access_checks), before the proposal is stored, before it is approved and before it runs; it runs impersonating
  that identity, so the API server enforces RBAC once more and its audit log names the person;
- `both`: the grants and the cluster must both allow.

Approvals are stored in SQL and any cluster's bot may take a click; only the proposal's own cluster can answer a
review, so another cluster's bot records the approval as `deferred` and the cluster's own bot reviews the approver
before it runs the fix (the executor), refusing it there if the cluster says no. A review that is not answered is a
refusal. Identities are resolved from Slack at most `access.identity.ttl_s` ago (never a stale answer after a failed
lookup) and every verdict carries the identity and the review result for the audit row of the decision it made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.access import Decision
from bot.access_checks import AccessCheck, refusal
from bot.flows.users import UserDirectory
from bot.identity import IdentityMap, KubeIdentity, Unmapped
from bot.kube.reviews import AccessReviewer
from bot.settings import AccessSettings


def identity_map(access: AccessSettings) -> IdentityMap:
    """The identity mapping of the settings (already validated when they loaded)."""
    ident = access.identity
    return IdentityMap(
        email_template=ident.email_template,
        users={uid: (m.user, tuple(m.groups)) for uid, m in ident.users.items()},
        groups=ident.groups,
    )


class ClusterAuthority:
    """Identity mapping and SubjectAccessReviews for one bot; see the module docstring."""

    def __init__(
        self, access: AccessSettings, *, cluster: str, users: UserDirectory, reviewer: AccessReviewer | None
    ) -> None:
        self.mode = access.mode
        self.cluster = cluster
        self.users = users
        self.map = identity_map(access)
        self.reviewer = reviewer
        self.ttl_s = access.identity.ttl_s
        self._cache: dict[str, tuple[float, KubeIdentity | Unmapped]] = {}

    @property
    def grants_decide(self) -> bool:
        """Whether the bot's own grants are asked (modes grants and both)."""
        return self.mode in ("grants", "both")

    @property
    def cluster_decides(self) -> bool:
        """Whether the cluster is asked (modes kubernetes and both)."""
        return self.mode in ("kubernetes", "both")

    async def identity(self, user_id: str) -> KubeIdentity | Unmapped:
        """The Kubernetes identity of a Slack user, resolved at most `ttl_s` ago."""
        now = asyncio.get_running_loop().time()
        hit = self._cache.get(user_id)
        if hit is not None and now - hit[0] <= self.ttl_s:
            return hit[1]
        profile = await self.users.profile(user_id, max_age_s=self.ttl_s) if self.map.needs_profile(user_id) else None
        member_of = [g for g in self.map.slack_groups if user_id in await self.users.members(g, max_age_s=self.ttl_s)]
        found = self.map.map(user_id, profile, member_of)
        if isinstance(found, KubeIdentity) or profile is not None or not self.map.needs_profile(user_id):
            self._cache[user_id] = (now, found)  # a failed Slack lookup is not remembered
        return found

    async def review(self, user_id: str, cluster: str, checks: Sequence[AccessCheck]) -> Decision:
        """Whether the cluster lets this Slack user's identity do every one of `checks`: the Decision carries the
        identity (which the action then impersonates) and the audit parameters naming it and the answer."""
        if not self.cluster_decides:
            return Decision(True, "allowed by grants")
        found = await self.identity(user_id)
        if isinstance(found, Unmapped):
            reason = f"refused: you have no Kubernetes identity ({found.reason}); you can read but not act"
            return Decision(False, reason, None, {**found.audit(), "review": "not asked: no identity"})
        params = found.audit()
        if cluster != self.cluster or self.reviewer is None:
            note = f"deferred: the bot of cluster {cluster} reviews {found.user} before it runs"
            return Decision(True, note, found, {**params, "review": note})
        reasons: list[str] = []
        for check in checks:
            answer = await self.reviewer.review(found, check)
            if not answer.answered:
                reason = f"refused: {answer.reason}; `{found.user}` was not allowed anything"
                return Decision(False, reason, found, {**params, "review": f"no answer: {check.words()}"})
            if not answer.allowed:
                reason = f"refused: {refusal(found.user, check)}"
                return Decision(False, reason, found, {**params, "review": f"denied: {check.words()}"})
            reasons.append(answer.reason)
        allowed = "; ".join(dict.fromkeys(r for r in reasons if r)) or "allowed"
        return Decision(True, f"allowed for `{found.user}`", found, {**params, "review": f"allowed: {allowed}"[:400]})
