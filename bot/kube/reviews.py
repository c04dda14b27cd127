"""Asking the API server whether an identity may do something: SubjectAccessReview (issue 15).

`POST /apis/authorization.k8s.io/v1/subjectaccessreviews` with `spec.user`, `spec.groups` and
`spec.resourceAttributes` returns `status.allowed` (and `status.denied`, `status.reason`, `status.evaluationError`) as
the cluster's authorizers (RBAC, webhooks) decide. The bot needs `create` on `subjectaccessreviews`. A review that is
not answered (timeout, 5xx, the bot not allowed to ask) is a refusal, never an allowance.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.access_checks import AccessCheck
from bot.identity import KubeIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Review:
    """The API server's answer: `answered` False when it gave none (then `allowed` is False too)."""

    allowed: bool
    answered: bool
    reason: str = ""


class AccessReviewer:
    """SubjectAccessReviews on one cluster."""

    def __init__(self, api_client: Any, *, timeout_s: float = 5.0) -> None:
        self._authz: Any = k8s.AuthorizationV1Api(api_client)
        self._timeout_s = timeout_s

    async def review(self, identity: KubeIdentity, check: AccessCheck) -> Review:
        """Whether `identity` may do `check`, as the API server answers now."""
        attributes: dict[str, str] = {"verb": check.verb, "resource": check.resource, "group": check.group}
        if check.namespace:
            attributes["namespace"] = check.namespace
        if check.name:
            attributes["name"] = check.name
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": identity.user, "groups": list(identity.review_groups), "resourceAttributes": attributes},
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._authz.create_subject_access_review(body, _request_timeout=self._timeout_s)
        except ApiException as exc:
            if exc.status == 403:
                return Review(False, False, "the bot may not ask the API server (RBAC: create subjectaccessreviews)")
            log.warning("subjectaccessreview failed: HTTP %s", exc.status)
            return Review(False, False, f"the API server did not answer the access review (HTTP {exc.status})")
        except (TimeoutError, OSError, ValueError) as exc:
            log.warning("subjectaccessreview failed: %s", type(exc).__name__)
            return Review(False, False, "the API server did not answer the access review in time")
        status = getattr(answer, "status", None)
        if status is None:
            return Review(False, False, "the API server did not answer the access review (no status)")
        allowed = status.allowed is True and status.denied is not True
        reason = str(status.reason or status.evaluation_error or "")[:300]
        return Review(allowed, True, reason)
