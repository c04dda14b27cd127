"""A simulated Kubernetes API server (aiohttp) that real clients use: kubernetes_asyncio (the bot) and kubectl.

It serves HTTPS only, with a CA the written kubeconfig carries (`tls.py`; kubectl sends no bearer token to a plain-HTTP
server), discovery (/api, /apis, resource lists, /version claiming `openapi.KUBE_VERSION`), the OpenAPI v3 documents
and a protobuf /openapi/v2 that kubectl reads before `apply` (`openapi.py`), server-side Tables for `kubectl get`
(`tables.py`), list (labelSelector, fieldSelector restricted to each resource's selectable fields, limit/continue),
get, create, replace, the three patch formats, delete with DeleteOptions (preconditions, graceful pod deletion that
leaves the pod Terminating) and watch (resourceVersion, bookmarks about every bookmark_interval_s and 2 s before the
timeout, timeoutSeconds, 410 Gone once the history, bounded by count and by time, has moved past the requested
version). Writes are checked as kube-apiserver checks them (`validation.py`: fieldValidation, the OpenAPI schema,
Secret types and immutability, a Lease update needs its resourceVersion). Bearer tokens authenticate; the admin token
may do anything, ServiceAccount tokens are held to the RBAC objects loaded (`rbac.py`, e.g. the Helm chart's). Errors
are Status objects; fault knobs are in `SimCluster.faults`.

Known simplifications:
- no finalizers and no garbage collector: deleting an owner leaves its dependents (except a namespace's contents,
  removed at once); a ReplicaSet replaces a deleted pod at once, no other controller runs; the "kubelet" that ends a
  Terminating pod is a timer (`termination_s`, else the grace period; never on `lost_nodes`) or `finish_deletion()`;
- a continued list reads the current state rather than a snapshot; status is not a separate subresource for PUT on
  the main resource;
- validation is the OpenAPI schema (first error only, wording close to but not exactly apiserver's) plus Secret rules
  and the Lease resourceVersion rule, not the whole of pkg/apis/*/validation; immutable fields other than a Secret's
  are not enforced; unknown fields are found by schema walk (Warn prunes them, as decoding into Go types does);
- /openapi/v2 holds only the PATCH operations (no definitions: kubectl falls back to compiled-in types for apply);
  Tables have real columns for pods only (others: Name, Created At); no aggregated discovery, no protobuf or CBOR
  bodies, no server-side apply (apply-patch+yaml), no watch of Tables;
- RBAC: Roles, ClusterRoles and bindings loaded from manifests (not served as API resources); no aggregation rules,
  no impersonation; non-resource URLs are open to every authenticated user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import copy
import json
import ssl
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from testkit.kube import exec_plugin, openapi, protobuf, tables, validation
from testkit.kube.faults import Faults
from testkit.kube.objectstore import (
    RESOURCES,
    ApiError,
    Obj,
    ObjectStore,
    ResourceType,
    WatchEvent,
    check_field_selector,
    match_fields,
    match_labels,
    resource_for,
)
from testkit.kube.patch import apply_patch
from testkit.kube.rbac import MASTERS, Authorizer, User, impersonated
from testkit.kube.rbac import Request as RbacRequest
from testkit.kube.tls import serving_certs

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNAUTHENTICATED = ("/healthz", "/livez", "/readyz")
_ACTING: contextvars.ContextVar[User | None] = contextvars.ContextVar("sim_acting_user", default=None)
_REVIEWS = {"subjectaccessreviews": "SubjectAccessReview", "selfsubjectaccessreviews": "SelfSubjectAccessReview"}


@dataclass(frozen=True, slots=True)
class Impersonation:
    """One impersonated request: who sent it and whom it acted as (the headers it carried)."""

    method: str
    path: str
    by: str
    user: str
    groups: tuple[str, ...]


def _status_response(err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(err.status(), status=err.code, headers=headers)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "BadRequest", f"continue key is not valid: {exc}") from exc


class SimCluster:
    """The simulated cluster: an object store, an HTTP API in front of it, and fault knobs."""

    def __init__(
        self,
        token: str = "sim-token",  # noqa: S107 - a fixed test credential for a loopback simulator
        history_limit: int = 1000,
        bookmark_interval_s: float = 60.0,
        bookmark_before_timeout_s: float = 2.0,
        history_window_s: float | None = 300.0,
        replace_deleted_pods: bool = True,
        tls: bool = True,
        termination_s: float | None = None,
        check_token: bool = True,
    ) -> None:
        self.token = token
        # A test may let requests without a token through as the admin (scenario runs of many kubectl calls).
        self.check_token = check_token
        self.tls = tls
        # Bearer tokens and who they authenticate: the admin token bypasses authorization (system:masters);
        # tokens of ServiceAccounts (service_account_token) are held to the RBAC objects loaded with load_rbac.
        self.users: dict[str, User] = {token: User("kubernetes-admin", (MASTERS, "system:authenticated"))}
        self.rbac = Authorizer()
        # Tokens of the test exec plugin (exec_plugin.py): signed with this secret, valid until their expiry.
        self.exec_secret = uuid.uuid4().hex
        self.exec_user = User("exec-user", (MASTERS, "system:authenticated"))
        # Authorization decisions for non-admin users: (user name, request attributes, allowed).
        self.authorizations: deque[tuple[str, RbacRequest, bool]] = deque(maxlen=10_000)
        # SubjectAccessReviews answered: (subject user, attributes, allowed).
        self.reviews: deque[tuple[str, RbacRequest, bool]] = deque(maxlen=10_000)
        self.store = ObjectStore(history_limit=history_limit, history_window_s=history_window_s)
        self.faults = Faults()
        self.faults._drop = self.store.drop_watches
        self.faults._expire = self.store.expire_history
        self.bookmark_interval_s = bookmark_interval_s
        self.bookmark_before_timeout_s = bookmark_before_timeout_s
        self.replace_deleted_pods = replace_deleted_pods
        # Graceful pod deletion: the kubelet stand-in finishes a Terminating pod after `termination_s` seconds (None:
        # after its whole grace period, as for a container that ignores SIGTERM), never on a node in `lost_nodes`.
        self.termination_s = termination_s
        self.lost_nodes: set[str] = set()
        self._finishers: dict[str, asyncio.TimerHandle] = {}
        self.requests: deque[tuple[str, str]] = deque(maxlen=2000)  # (method, path?query) of recent requests
        # Impersonated requests (Impersonate-User / Impersonate-Group headers), as the API server's audit log names
        # them: who sent it, and the user and groups it acted as.
        self.impersonations: deque[Impersonation] = deque(maxlen=2000)
        self.open_watches = 0
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ---- lifecycle ----

    @property
    def url(self) -> str:
        """The base URL (http://127.0.0.1:PORT); only after start()."""
        if self._url is None:
            raise RuntimeError("SimCluster is not started")
        return self._url

    async def start(self) -> str:
        """Bind 127.0.0.1 on a free port and serve; returns the base URL."""
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        ssl_context = serving_certs().server_context() if self.tls else None
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self._url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self._url

    @property
    def ca_file(self) -> Path:
        """The PEM file of the CA that signed the serving certificate (only with tls)."""
        return serving_certs().ca_file

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context trusting the simulator's CA (None over plain HTTP), for raw aiohttp calls."""
        return serving_certs().client_context() if self.tls else None

    async def stop(self) -> None:
        """End open watches and stop serving."""
        for handle in self._finishers.values():
            handle.cancel()
        self._finishers.clear()
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token that authenticates as the ServiceAccount `namespace/name` (held to the loaded RBAC)."""
        token = f"sa-{uuid.uuid4().hex}"
        self.users[token] = User.service_account(namespace, name)
        return token

    def load_rbac(self, objects: list[Obj]) -> int:
        """Load Roles, ClusterRoles and their bindings (e.g. a rendered Helm chart); returns how many were taken."""
        return self.rbac.load(objects)

    def write_kubeconfig(
        self,
        path: str | Path,
        context: str = "sim",
        token: str | None = None,
        *,
        token_file: Path | None = None,
        exec_ttl_s: float | None = None,
        exec_env: dict[str, str] | None = None,
    ) -> Path:
        """Write a kubeconfig with one cluster, one user and one context.

        The user has the admin's token unless `token`; or a `tokenFile`; or, with `exec_ttl_s`, an exec plugin
        (testkit.kube.exec_plugin) issuing tokens that expire after that many seconds (`exec_env` adds variables,
        e.g. SIM_EXEC_FAIL_FILE).
        """
        path = Path(path)
        user: dict[str, Any] = {"token": token or self.token}
        if token_file is not None:
            user = {"tokenFile": str(token_file)}
        elif exec_ttl_s is not None:
            env = {"SIM_EXEC_SECRET": self.exec_secret, "SIM_EXEC_TTL_S": str(exec_ttl_s), **(exec_env or {})}
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": ["-m", "testkit.kube.exec_plugin"],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "interactiveMode": "Never",
                    "provideClusterInfo": False,
                }
            }
        cluster: dict[str, str] = {"server": self.url}
        if self.tls:
            # As kubeadm's admin.conf: the CA inline, so the file is self-contained.
            cluster["certificate-authority-data"] = base64.b64encode(serving_certs().ca_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": f"{context}-user", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-user"}}],
            "current-context": context,
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # ---- object helpers for tests and the demo (no HTTP) ----

    def put(self, obj: Obj) -> Obj:
        """Create or replace an object (its kind says where), bumping the resourceVersion and notifying watches.

        A missing namespace is created first, as a convenience for tests.
        """
        rt = resource_for(str(obj["kind"]))
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or "default") if rt.namespaced else None
        if ns and self.store.find(resource_for("Namespace"), None, ns) is None:
            self.store.create(resource_for("Namespace"), {"metadata": {"name": ns}})
        if meta.get("name") and self.store.find(rt, ns, meta["name"]) is not None:
            return self.store.replace(rt, obj, ns, check_rv=False)
        return self.store.create(rt, obj, ns)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of one object, or None."""
        rt = resource_for(kind)
        obj = self.store.find(rt, namespace if rt.namespaced else None, name)
        return copy.deepcopy(obj) if obj is not None else None

    def delete(self, kind: str, namespace: str | None, name: str, grace_period_s: int | None = 0) -> Obj | None:
        """Delete one object as the API would (a ReplicaSet replaces its pod); returns it, or None if absent.

        The default grace period 0 removes a pod at once, as when its kubelet has confirmed the termination;
        `grace_period_s=None` uses the pod's terminationGracePeriodSeconds (what a DELETE without options does) and
        leaves it Terminating.
        """
        rt = resource_for(kind)
        options: Obj = {} if grace_period_s is None else {"gracePeriodSeconds": grace_period_s}
        try:
            return self._delete(rt, namespace if rt.namespaced else None, name, dry_run=False, options=options)
        except ApiError:
            return None

    def finish_deletion(self, namespace: str, name: str) -> Obj | None:
        """The kubelet stand-in: a Terminating pod's containers have stopped; remove it now. None if not terminating."""
        pod = self.store.find(resource_for("Pod"), namespace, name)
        if pod is None or not pod["metadata"].get("deletionTimestamp"):
            return None
        return self._delete(resource_for("Pod"), namespace, name, dry_run=False, options={"gracePeriodSeconds": 0})

    def terminating(self, namespace: str, name: str) -> bool:
        """Whether a pod exists with metadata.deletionTimestamp set."""
        pod = self.store.find(resource_for("Pod"), namespace, name)
        return pod is not None and bool(pod["metadata"].get("deletionTimestamp"))

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Copies of all objects of a kind, optionally in one namespace."""
        return [copy.deepcopy(o) for o in self.store.items(resource_for(kind), namespace)]

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self.store.rv

    # ---- controller-like behaviour ----

    def _delete(
        self, rt: ResourceType, namespace: str | None, name: str, dry_run: bool, options: Obj | None = None
    ) -> Obj:
        """DELETE with DeleteOptions: preconditions (409 Conflict), then graceful deletion for pods.

        Real sources: apiserver `registry/generic/registry/store.go` (Delete: preconditions, then
        `rest.BeforeDelete` decides graceful or immediate), `rest/delete.go` (BeforeDelete: a second delete may only
        shorten the grace period), `storage/interfaces.go` (Preconditions.Check's messages) and
        `pkg/registry/core/pod/strategy.go` (CheckGracefulDelete: the options' gracePeriodSeconds, else the pod's
        terminationGracePeriodSeconds; 0 for an unscheduled or finished pod).
        """
        options = options or {}
        current = self.store.get(rt, namespace, name)
        self._check_preconditions(rt, current, options.get("preconditions") or {})
        if rt.plural == "pods":
            grace = self._grace_period(current, options.get("gracePeriodSeconds"))
            if grace > 0:
                return self._delete_gracefully(rt, current, grace, dry_run)
        already_terminating = bool(current["metadata"].get("deletionTimestamp"))
        gone = self.store.delete(rt, namespace, name, dry_run=dry_run)
        if dry_run:
            return gone
        handle = self._finishers.pop(current["metadata"]["uid"], None)
        if handle is not None:
            handle.cancel()
        if rt.plural == "namespaces":
            for child_rt, child in list(self.store.all_namespaced_objects(name)):
                self.store.delete(child_rt, name, child["metadata"]["name"])
        elif rt.plural == "pods" and self.replace_deleted_pods and not already_terminating:
            self._replace_pod(gone)
        return gone

    @staticmethod
    def _check_preconditions(rt: ResourceType, current: Obj, pre: Obj) -> None:
        meta = current["metadata"]
        plural = rt.plural if not rt.group else f"{rt.plural}.{rt.group}"
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            want = pre.get(field)
            if want is not None and want != meta.get(field):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural} "{meta["name"]}": Precondition failed: '
                    f"{label} in precondition: {want}, {label} in object meta: {meta.get(field)}",
                    {"name": meta["name"], "kind": rt.plural},
                )

    @staticmethod
    def _grace_period(pod: Obj, requested: Any) -> int:
        spec = pod.get("spec") or {}
        # 30: the API's default for terminationGracePeriodSeconds
        grace = int(requested) if requested is not None else int(spec.get("terminationGracePeriodSeconds", 30))
        if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            grace = 0
        return 1 if grace < 0 else grace

    def _delete_gracefully(self, rt: ResourceType, current: Obj, grace: int, dry_run: bool) -> Obj:
        meta = current["metadata"]
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=grace)
        first = not meta.get("deletionTimestamp")
        if not first and grace >= int(meta.get("deletionGracePeriodSeconds") or 0):
            return current  # only a shorter grace period changes a deletion already under way
        if dry_run:
            meta["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["deletionGracePeriodSeconds"] = grace
            return current
        marked = self.store.mark_deleting(rt, meta.get("namespace"), meta["name"], deadline, grace)
        if first and self.replace_deleted_pods:
            self._replace_pod(marked)  # the ReplicaSet controller does not count a terminating pod
        self._schedule_finish(marked, grace)
        return marked

    def _schedule_finish(self, pod: Obj, grace: int) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self.lost_nodes:
            return  # no kubelet will ever confirm: Terminating for ever (until someone force-deletes)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        delay = grace if self.termination_s is None else min(float(grace), self.termination_s)
        old = self._finishers.pop(uid, None)
        if old is not None:
            old.cancel()

        def finish() -> None:
            self._finishers.pop(uid, None)
            found = self.store.find(resource_for("Pod"), meta["namespace"], meta["name"])
            if found is not None and found["metadata"]["uid"] == uid:
                self.finish_deletion(meta["namespace"], meta["name"])

        self._finishers[uid] = loop.call_later(delay, finish)

    def _replace_pod(self, pod: Obj) -> None:
        owners = pod["metadata"].get("ownerReferences") or []
        owner = next((o for o in owners if o.get("controller") and o.get("kind") == "ReplicaSet"), None)
        if (
            owner is None
            or self.store.find(resource_for("ReplicaSet"), pod["metadata"]["namespace"], owner["name"]) is None
        ):
            return
        new = copy.deepcopy(pod)
        meta = new["metadata"]
        meta["name"] = f"{owner['name']}-{uuid.uuid4().hex[:5]}"
        meta["generateName"] = f"{owner['name']}-"
        meta["uid"] = str(uuid.uuid4())
        for key in ("resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        self.store.create(resource_for("Pod"), new, meta["namespace"])

    # ---- HTTP ----

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if self.check_token and request.path not in _UNAUTHENTICATED and self._user(request) is None:
            return _status_response(ApiError(401, "Unauthorized", "Unauthorized"))
        if request.path not in _UNAUTHENTICATED:
            try:
                _ACTING.set(self._acting_user(request))
            except ApiError as refused:
                return _status_response(refused)
        planned = self.faults.take(request.method, request.path)
        if planned is not None:
            status, retry_after = planned
            if status == 429:
                err = ApiError(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    {"retryAfterSeconds": retry_after},
                )
            else:
                err = ApiError(status, "InternalError", "Internal error occurred: injected fault")
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return _status_response(err, headers)
        try:
            return await handler(request)
        except ApiError as err:
            return _status_response(err)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in _UNAUTHENTICATED:
            return web.Response(text="ok")
        if path == "/version":
            return web.json_response(_VERSION)
        if path == "/openapi/v2":
            if openapi.V2_PROTOBUF not in request.headers.get("Accept", ""):
                raise ApiError(406, "NotAcceptable", "only the protobuf form of /openapi/v2 is simulated")
            return web.Response(body=openapi.v2_protobuf(), headers={"Content-Type": openapi.V2_PROTOBUF_TYPE})
        if path == "/openapi/v3":
            return web.json_response(openapi.index())
        if path.startswith("/openapi/v3/"):
            doc = openapi.document(path.removeprefix("/openapi/v3/"))
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.Response(body=doc, content_type="application/json")
        if path == "/api":
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
                }
            )
        if path == "/apis":
            return web.json_response(_group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[0] == "apis" and len(parts) == 2:
            found = [g for g in _group_list()["groups"] if g["name"] == parts[1]]
            if not found:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **found[0]})
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return web.json_response(_resource_list(group, version))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if group == "authorization.k8s.io" and version == "v1" and plural in _REVIEWS and len(rest) == 1:
            return await self._access_review(request, plural, namespace)
        rt = next((r for r in RESOURCES if r.group == group and r.version == version and r.plural == plural), None)
        if rt is None or (subresource not in (None, "status")) or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._authorize(request, rt, namespace, name, subresource)
        return await self._serve(request, rt, namespace, name)

    def _user(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        token = header.removeprefix("Bearer ")
        valid = exec_plugin.verify(self.exec_secret, token)
        if valid is not None:
            return self.exec_user if valid else None  # an expired exec token is 401, as EKS answers
        return self.users.get(token)

    def revoke(self, token: str) -> None:
        """Forget a token (a rotated service account token, a deleted user): it gets 401 from now on."""
        self.users.pop(token, None)

    def add_token(self, token: str, user: User | None = None) -> None:
        """Accept another bearer token (by default for the admin user)."""
        self.users[token] = user or self.users[self.token]

    def _acting_user(self, request: web.Request) -> User | None:
        """The user a request acts as: the authenticated one, or whom it impersonates if that user may.

        As apiserver's impersonation filter (endpoints/filters/impersonation.go): `impersonate` on `users` (or on
        `serviceaccounts` for a service account name) and on `groups` for each Impersonate-Group header, checked
        against the authenticated user's RBAC; a refusal is the usual 403 naming the resource; groups without a user
        are an error."""
        user = self._user(request)
        if user is None and not self.check_token:
            user = self.users[self.token]
        names = request.headers.getall("Impersonate-User", [])
        groups = request.headers.getall("Impersonate-Group", [])
        extras = [h for h in request.headers if h.lower().startswith("impersonate-extra-")]
        if not names:
            if groups or extras:
                raise ApiError(500, "InternalError", "requested impersonation of groups without impersonating a user")
            return user
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if extras:
            raise ApiError(403, "Forbidden", "impersonating user extras is not simulated")
        name = names[0]
        wanted: list[RbacRequest] = []
        sa = name.split(":")
        if name.startswith("system:serviceaccount:") and len(sa) == 4:
            wanted.append(RbacRequest("impersonate", "", "serviceaccounts", sa[2], sa[3]))
        else:
            wanted.append(RbacRequest("impersonate", "", "users", None, name))
        wanted += [RbacRequest("impersonate", "", "groups", None, g) for g in groups]
        for attrs in wanted:
            allowed = self.rbac.allows(user, attrs)
            self.authorizations.append((user.name, attrs, allowed))
            if not allowed:
                raise self.rbac.forbidden(user, attrs)
        acting = impersonated(name, groups)
        self.impersonations.append(Impersonation(request.method, request.path_qs, user.name, name, tuple(groups)))
        return acting

    def _authorize(
        self, request: web.Request, rt: ResourceType, ns: str | None, name: str | None, subresource: str | None
    ) -> None:
        user = _ACTING.get()
        if user is None or MASTERS in user.groups:
            return
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(request.method, "get")
        if name is None:
            if request.method == "GET":
                verb = "watch" if _truthy(request.query.get("watch")) else "list"
            elif request.method == "DELETE":
                verb = "deletecollection"
        attrs = RbacRequest(verb, rt.group, rt.plural, ns, name, subresource)
        allowed = self.rbac.allows(user, attrs)
        self.authorizations.append((user.name, attrs, allowed))
        if not allowed:
            raise self.rbac.forbidden(user, attrs)

    async def _access_review(self, request: web.Request, plural: str, namespace: str | None) -> web.StreamResponse:
        """POST a SubjectAccessReview (whether `spec.user`/`spec.groups` may do `spec.resourceAttributes`) or a
        SelfSubjectAccessReview (whether the requester may): evaluated by the same RBAC as every request, answered
        201 with `status.allowed` and, when allowed, RBAC's reason."""
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {plural}")
        if namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        user = _ACTING.get()
        if plural == "subjectaccessreviews" and user is not None and MASTERS not in user.groups:
            attrs = RbacRequest("create", "authorization.k8s.io", plural)
            allowed = self.rbac.allows(user, attrs)
            self.authorizations.append((user.name, attrs, allowed))
            if not allowed:
                raise self.rbac.forbidden(user, attrs)
        body = await self._read_body(request)
        spec = body.get("spec") if isinstance(body, dict) else None
        kind = _REVIEWS[plural]
        if not isinstance(spec, dict):
            raise ApiError(400, "BadRequest", f"{kind} in body has no spec")
        resource = spec.get("resourceAttributes")
        if not isinstance(resource, dict) or spec.get("nonResourceAttributes") is not None:
            raise ApiError(
                422, "Invalid", f'{kind}.authorization.k8s.io "" is invalid: spec.resourceAttributes: Required value'
            )
        if plural == "subjectaccessreviews":
            subject_name, subject_groups = spec.get("user") or "", spec.get("groups") or []
            if not subject_name and not subject_groups:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{kind}.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one of user'
                    " or group must be specified",
                )
            subject = User(str(subject_name), tuple(str(g) for g in subject_groups))
        else:
            subject = user or self.users[self.token]
        attrs = RbacRequest(
            str(resource.get("verb") or ""),
            str(resource.get("group") or ""),
            str(resource.get("resource") or ""),
            resource.get("namespace") or None,
            resource.get("name") or None,
            resource.get("subresource") or None,
        )
        reason = self.rbac.decide(subject, attrs)
        status: Obj = {"allowed": reason is not None}
        if reason is not None:
            status["reason"] = reason
        answer = {"kind": kind, "apiVersion": "authorization.k8s.io/v1", "metadata": {}, "spec": spec, "status": status}
        self.reviews.append((subject.name, attrs, reason is not None))
        return web.json_response(answer, status=201)

    async def _read_body(self, request: web.Request) -> Any:
        if "protobuf" in request.content_type:
            # kubectl 1.33 creates Secrets in protobuf and never falls back to JSON.
            try:
                return protobuf.decode(await request.read())
            except (ValueError, IndexError) as exc:
                raise ApiError(415, "UnsupportedMediaType", f"protobuf body not understood: {exc}") from exc
        try:
            return json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc

    async def _serve(
        self, request: web.Request, rt: ResourceType, ns: str | None, name: str | None
    ) -> web.StreamResponse:
        q = request.query
        dry_run = q.get("dryRun") == "All"
        method = request.method
        if name is None:
            if method == "GET":
                if _truthy(q.get("watch")):
                    return await self._watch(request, rt, ns)
                listed = self._list(rt, ns, q)
                if tables.wants_table(request.headers.get("Accept", "")):
                    return web.json_response(tables.table(rt.kind, listed["items"], listed["metadata"]))
                return web.json_response(listed)
            if method == "POST":
                body = await self._read_body(request)
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the request body must be an object")
                self._check_kind(rt, body)
                warnings = validation.check_fields(rt, body, q.get("fieldValidation"))
                validation.validate_write(rt, body, None)
                created = self.store.create(rt, body, ns, dry_run=dry_run)
                return web.json_response(created, status=201, headers=_warning_headers(warnings))
            if method == "DELETE":
                raise ApiError(405, "MethodNotAllowed", "deletecollection is not simulated")
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "GET":
            got = self.store.get(rt, ns, name)
            if tables.wants_table(request.headers.get("Accept", "")):
                return web.json_response(
                    tables.table(rt.kind, [got], {"resourceVersion": got["metadata"]["resourceVersion"]})
                )
            return web.json_response(got)
        if method == "PUT":
            body = await self._read_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body must be an object")
            self._check_kind(rt, body)
            body_name = (body.get("metadata") or {}).get("name")
            if body_name != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
            if rt.plural in _CONDITIONAL_UPDATE and not (body.get("metadata") or {}).get("resourceVersion"):
                # registry/generic/registry/store.go Update: a strategy that does not AllowUnconditionalUpdate
                # (the Lease strategy, pkg/registry/coordination/lease/strategy.go) needs the resourceVersion read.
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rt.kind}.{rt.group} "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                    "must be specified for an update",
                    {
                        "name": name,
                        "group": rt.group,
                        "kind": rt.kind,
                        "causes": [
                            {
                                "reason": "FieldValueInvalid",
                                "message": "Invalid value: 0x0: must be specified for an update",
                                "field": "metadata.resourceVersion",
                            }
                        ],
                    },
                )
            warnings = validation.check_fields(rt, body, q.get("fieldValidation"))
            validation.validate_write(rt, body, self.store.find(rt, ns, name))
            replaced = self.store.replace(rt, body, ns, dry_run=dry_run)
            return web.json_response(replaced, headers=_warning_headers(warnings))
        if method == "PATCH":
            patch = await self._read_body(request)
            current = self.store.get(rt, ns, name)
            patched = apply_patch(request.headers.get("Content-Type", ""), current, patch)
            patched.setdefault("metadata", {})["name"] = name
            # A patch that names a resourceVersion is a precondition; otherwise it applies to the latest.
            sent_rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
            if not sent_rv:
                patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            warnings = validation.check_fields(rt, patched, q.get("fieldValidation"))
            validation.validate_write(rt, patched, current)
            replaced = self.store.replace(rt, patched, ns, dry_run=dry_run)
            return web.json_response(replaced, headers=_warning_headers(warnings))
        if method == "DELETE":
            body = await self._read_body(request)
            options = dict(body) if isinstance(body, dict) else {}
            if "gracePeriodSeconds" in q:
                options["gracePeriodSeconds"] = q["gracePeriodSeconds"]
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            gone = self._delete(rt, ns, name, dry_run=dry_run, options=options)
            if rt.plural == "pods":
                return web.json_response(gone)
            details = {"name": name, "kind": rt.plural, "uid": gone["metadata"]["uid"]}
            if rt.group:
                details["group"] = rt.group
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _check_kind(rt: ResourceType, body: Obj) -> None:
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise ApiError(400, "BadRequest", f"the kind {kind!r} of the body does not match the URL ({rt.kind})")

    def _list(self, rt: ResourceType, ns: str | None, q: Any) -> Obj:
        label_selector = q.get("labelSelector")
        field_selector = q.get("fieldSelector")
        limit = int(q.get("limit") or 0)
        token = q.get("continue")
        list_rv = self.store.rv
        start = ""
        if token:
            list_rv, start = _decode_continue(token)
            self.store.compact()
            if list_rv < self.store.floor:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a "
                    "new list without the continue parameter, or use the continue token in this response to retrieve "
                    "the remainder of the results. Continuing with the provided token results in an inconsistent list "
                    "- objects that were created, modified, or deleted between the time the first chunk was returned "
                    "and now may show up in the list.",
                )
        check_field_selector(rt, field_selector)
        after = _key_tuple(start) if start else None
        selected, following = self.store.page(rt, ns, label_selector, field_selector, after=after, limit=limit)
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and following:
            meta["continue"] = _encode_continue(list_rv, _key(selected[-1]))
            if not (label_selector or field_selector):
                # ListMeta: with a selector the number of remaining items is unknown and the field is left unset.
                meta["remainingItemCount"] = following
        # Real API servers leave kind/apiVersion out of the items of a typed list; clients rely on the list's kind.
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in selected]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}

    async def _watch(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.StreamResponse:
        q = request.query
        label_selector = q.get("labelSelector")
        field_selector = q.get("fieldSelector")
        check_field_selector(rt, field_selector)
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        timeout_s = float(q.get("timeoutSeconds") or 1800)
        rv_param = q.get("resourceVersion") or ""
        since: int | None = None if rv_param in ("", "0") else int(rv_param) if rv_param.isdigit() else -1
        if since == -1:
            raise ApiError(400, "BadRequest", f"invalid resource version: {rv_param}")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(kind: str, obj: Obj) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

        try:
            sub, backlog = self.store.subscribe(rt, ns, since)
        except ApiError as err:
            # Real servers answer 200 and then an ERROR event carrying the Status.
            await send("ERROR", err.status())
            await resp.write_eof()
            return resp
        self.open_watches += 1
        deadline = time.monotonic() + timeout_s
        try:
            event: WatchEvent | None
            for event in backlog:
                if _selected(event.obj, label_selector, field_selector):
                    await send(event.type, event.obj)

            def next_bookmark_at(now: float) -> float:
                # cacher cache_watcher.go nextBookmarkTime: roughly every bookmark frequency (a minute), and 2 s
                # before the watch's deadline so that a client resumes from a fresh resourceVersion.
                return min(now + self.bookmark_interval_s, deadline - self.bookmark_before_timeout_s)

            next_bookmark = next_bookmark_at(time.monotonic())
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(0.0, next_bookmark - now))
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=wait)
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        bookmark = {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(self.store.rv)},
                        }
                        await send("BOOKMARK", bookmark)
                        after = next_bookmark_at(time.monotonic())
                        next_bookmark = after if after > next_bookmark else deadline + 1  # one pre-timeout bookmark
                    continue
                if event is None:
                    break
                if _selected(event.obj, label_selector, field_selector):
                    await send(event.type, event.obj)
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
        except ConnectionError:
            pass
        finally:
            self.open_watches -= 1
            self.store.unsubscribe(sub)
        return resp


def _warning_headers(warnings: list[str]) -> dict[str, str] | None:
    """RFC 7234 warning headers as kube-apiserver sends them (`299 - "text"`), one per warning."""
    if not warnings:
        return None
    return {"Warning": ", ".join("299 - " + json.dumps(w) for w in warnings)}


def _selected(obj: Obj, label_selector: str | None, field_selector: str | None) -> bool:
    return match_labels(obj, label_selector) and match_fields(obj, field_selector)


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _key_tuple(key: str) -> tuple[str, str]:
    """`_key`'s text back as the store's (namespace, name) key (a namespace never holds a slash)."""
    namespace, _, name = key.partition("/")
    return namespace, name


_VERSION = {
    "major": "1",
    "minor": openapi.KUBE_VERSION.split(".")[1],
    "gitVersion": f"v{openapi.KUBE_VERSION}.0-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_CONDITIONAL_UPDATE = frozenset({"leases"})  # strategies whose AllowUnconditionalUpdate() is false

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _group_list() -> Obj:
    groups: dict[str, list[str]] = {}
    for rt in RESOURCES:
        if rt.group:
            groups.setdefault(rt.group, [])
            if rt.version not in groups[rt.group]:
                groups[rt.group].append(rt.version)
    groups["authorization.k8s.io"] = ["v1"]  # access reviews: created, never stored
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
            }
            for name, versions in groups.items()
        ],
    }


def _resource_list(group: str, version: str) -> Obj:
    if (group, version) == ("authorization.k8s.io", "v1"):
        reviews = [
            {"name": plural, "singularName": kind.lower(), "namespaced": False, "kind": kind, "verbs": ["create"]}
            for plural, kind in _REVIEWS.items()
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "authorization.k8s.io/v1",
            "resources": reviews,
        }
    resources = [rt for rt in RESOURCES if rt.group == group and rt.version == version]
    if not resources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    out: list[Obj] = []
    for rt in resources:
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.kind.lower(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        out.append(entry)
        if rt.plural in ("pods", "replicasets", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"):
            out.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}
