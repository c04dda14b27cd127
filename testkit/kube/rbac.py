"""RBAC for the simulated API server: Roles, ClusterRoles and their bindings decide what a user may do.

Modelled on kube-apiserver's RBAC authorizer (plugin/pkg/auth/authorizer/rbac/rbac.go, `RuleAllows` in
rbac/helpers): a request's attributes (verb, API group, resource and subresource, namespace, name) are allowed when a
rule of a role bound to the user matches them all. A ClusterRoleBinding applies its ClusterRole everywhere; a
RoleBinding applies its Role, or a ClusterRole, in the binding's namespace only. `resourceNames` restrict a rule to
named objects, so it never matches create or a collection read. Verbs come from the HTTP request as in apiserver's
`RequestInfoFactory` (endpoints/request/requestinfo.go): GET of a collection is list (watch with `watch=true`),
POST create, PUT update, PATCH patch, DELETE delete (deletecollection without a name).

A refusal is the 403 that `responsewriters.forbiddenMessage` words:
`pods "x" is forbidden: User "system:serviceaccount:ns:sa" cannot get resource "pods" in API group "" in the
namespace "shop"` (`at the cluster scope` for cluster-wide requests).

Non-resource paths (discovery, /version, /openapi) are allowed to every authenticated user, as the default
`system:discovery` and `system:public-info-viewer` ClusterRoles do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from testkit.kube.objectstore import ApiError

Obj = dict[str, Any]

MASTERS = "system:masters"  # the group of the admin user: bypasses authorization, as in a real cluster


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated identity."""

    name: str
    groups: tuple[str, ...] = ()

    @staticmethod
    def service_account(namespace: str, name: str) -> User:
        """The user a ServiceAccount token authenticates as."""
        return User(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )


@dataclass(frozen=True, slots=True)
class Request:
    """The authorization attributes of one resource request."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def _matches(values: Iterable[str], wanted: str) -> bool:
    values = list(values)
    return "*" in values or wanted in values


def _rule_allows(rule: Obj, req: Request) -> bool:
    if not _matches(rule.get("verbs") or [], req.verb):
        return False
    if not _matches(rule.get("apiGroups") or [], req.group):
        return False
    resource = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
    resources = rule.get("resources") or []
    if not (_matches(resources, resource) or (req.subresource and f"*/{req.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or (req.name is not None and req.name in names)


def _subject_is(subject: Obj, user: User) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace', '')}:{subject.get('name', '')}"
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    return False


@dataclass
class Authorizer:
    """The RBAC objects of a simulated cluster (loaded from rendered manifests) and the decision over them."""

    roles: dict[tuple[str, str], Obj] = field(default_factory=dict)  # (namespace, name) -> Role
    cluster_roles: dict[str, Obj] = field(default_factory=dict)
    bindings: list[Obj] = field(default_factory=list)
    cluster_bindings: list[Obj] = field(default_factory=list)

    def load(self, objects: Iterable[Obj]) -> int:
        """Take the Role, ClusterRole, RoleBinding and ClusterRoleBinding objects among `objects`; how many."""
        count = 0
        for obj in objects:
            kind = obj.get("kind")
            meta = obj.get("metadata") or {}
            if kind == "Role":
                self._add_role(self.roles, (meta.get("namespace") or "default", meta["name"]), obj)
            elif kind == "ClusterRole":
                self._add_role(self.cluster_roles, meta["name"], obj)
            elif kind == "RoleBinding":
                self.bindings.append(obj)
            elif kind == "ClusterRoleBinding":
                self.cluster_bindings.append(obj)
            else:
                continue
            count += 1
        return count

    @staticmethod
    def _add_role(into: dict[Any, Obj], key: Any, role: Obj) -> None:
        # A role loaded twice (the same chart rendered for two clusters) grants the union of its rule sets.
        if key in into:
            merged = dict(into[key])
            merged["rules"] = [*(into[key].get("rules") or []), *(role.get("rules") or [])]
            into[key] = merged
        else:
            into[key] = role

    def _rules(self, ref: Obj, namespace: str | None) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(str(ref.get("name")))
        else:
            role = self.roles.get((namespace or "", str(ref.get("name"))))
        return list((role or {}).get("rules") or [])

    def allows(self, user: User, req: Request) -> bool:
        """Whether a rule bound to `user` allows the request."""
        return self.decide(user, req) is not None

    def decide(self, user: User, req: Request) -> str | None:
        """The reason a rule allows the request, worded as RBAC's authorizer words it, or None when none does.

        `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to User "alice"` (RoleBindings as "b/ns"),
        the reason a SubjectAccessReview answers (`authorizingVisitor.visit` in rbac.go)."""
        if MASTERS in user.groups:
            return "allowed: system:masters"
        for binding in self.cluster_bindings:
            subject = next((s for s in binding.get("subjects") or [] if _subject_is(s, user)), None)
            if subject is not None and any(_rule_allows(r, req) for r in self._rules(binding["roleRef"], None)):
                return _source("ClusterRoleBinding", binding, subject, None)
        if req.namespace is None:
            return None
        for binding in self.bindings:
            ns = (binding.get("metadata") or {}).get("namespace")
            if ns != req.namespace:
                continue
            subject = next((s for s in binding.get("subjects") or [] if _subject_is(s, user)), None)
            if subject is not None and any(_rule_allows(r, req) for r in self._rules(binding["roleRef"], ns)):
                return _source("RoleBinding", binding, subject, ns)
        return None

    def unbind(self, name: str, namespace: str | None = None) -> int:
        """Delete the RoleBinding `namespace/name` (or the ClusterRoleBinding `name`); how many were removed."""
        found = self.bindings if namespace is not None else self.cluster_bindings
        kept = [
            b
            for b in found
            if not (
                (b.get("metadata") or {}).get("name") == name
                and (namespace is None or (b.get("metadata") or {}).get("namespace") == namespace)
            )
        ]
        removed = len(found) - len(kept)
        found[:] = kept
        return removed

    @staticmethod
    def forbidden(user: User, req: Request) -> ApiError:
        """The 403 Status kube-apiserver answers."""
        resource = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
        qualified = f"{req.resource}.{req.group}" if req.group else req.resource
        subject = f'{qualified} "{req.name}"' if req.name else qualified
        scope = f'in the namespace "{req.namespace}"' if req.namespace else "at the cluster scope"
        message = (
            f'{subject} is forbidden: User "{user.name}" cannot {req.verb} resource "{resource}" in API group '
            f'"{req.group}" {scope}'
        )
        details: Obj = {"kind": req.resource}
        if req.name:
            details["name"] = req.name
        if req.group:
            details["group"] = req.group
        return ApiError(403, "Forbidden", message, details)


def _source(kind: str, binding: Obj, subject: Obj, namespace: str | None) -> str:
    meta = binding.get("metadata") or {}
    name = f"{meta.get('name')}/{namespace}" if namespace else str(meta.get("name"))
    ref = binding.get("roleRef") or {}
    who = subject.get("name")
    if subject.get("kind") == "ServiceAccount":
        who = f"{subject.get('name')}/{subject.get('namespace')}"
    return f'RBAC: allowed by {kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {subject.get("kind")} "{who}"'


def impersonated(requested_user: str, groups: list[str]) -> User:
    """The user an impersonated request acts as (apiserver `filters/impersonation.go`): the requested name and groups,
    a ServiceAccount's own groups when none are given, and `system:authenticated` added unless a group already says
    authenticated or unauthenticated (`system:unauthenticated` for `system:anonymous`)."""
    groups = list(groups)
    if requested_user.startswith("system:serviceaccount:") and not groups:
        namespace = requested_user.split(":")[2]
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    if requested_user != "system:anonymous":
        if not {"system:authenticated", "system:unauthenticated"} & set(groups):
            groups.append("system:authenticated")
    elif "system:unauthenticated" not in groups:
        groups.append("system:unauthenticated")
    return User(requested_user, tuple(groups))
