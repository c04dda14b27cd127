"""Cluster actions taken after approval: delete a controlled pod, write, copy and link pull secrets.

Every action validates its names first (hostile text changes nothing), supports a server-side dry run
(`dryRun=All`, which also surfaces RBAC refusals without changing anything), is idempotent, and returns an
`ActionResult` whose message is safe for Slack: names and credential fingerprints, never secret values, and
never the caller's raw input when that input is invalid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.identity import KubeIdentity
from bot.imageref import registry_key
from bot.kube.dockerconfig import (
    DOCKERCONFIGJSON_KEY,
    DOCKERCONFIGJSON_TYPE,
    build_dockerconfigjson,
    fingerprint,
    parse_secret,
    server_key,
)
from bot.kube.owners import controller_of, owner_refs

log = logging.getLogger(__name__)

T = TypeVar("T")

_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
_DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_HOST_RE = re.compile(
    r"(?:[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:]+\])(:[0-9]{1,5})?", re.ASCII
)
# What users paste as a registry server: an optional scheme, host[:port], an optional plain path ("/v1/").
_SERVER_RE = re.compile(r"(?i:https?://)?[A-Za-z0-9.\[\]:-]{1,260}(/[A-Za-z0-9._/-]{0,200})?", re.ASCII)
COPYABLE_TYPES = frozenset({DOCKERCONFIGJSON_TYPE, "kubernetes.io/dockercfg"})
COPIED_FROM_ANNOTATION = "imagepull-doctor/copied-from"
_CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one action: `message` is safe to post in Slack and to store in the audit log."""

    ok: bool
    message: str
    dry_run: bool
    changed: bool = False  # False when the cluster already was as asked (idempotent repeat) or on a dry run
    old_fingerprint: str | None = None  # upsert_pull_secret: the credential for the server before
    new_fingerprint: str | None = None  # upsert_pull_secret: the credential for the server after
    target_uid: str | None = None  # delete_pod: the uid of the pod it would delete (a proposal keeps it)


class _Refused(Exception):
    """An action that cannot go ahead, with a message safe for Slack."""


def _check_name(what: str, value: str, *, label: bool = False) -> None:
    regex, limit = (_DNS1123_LABEL_RE, 63) if label else (_DNS1123_SUBDOMAIN_RE, 253)
    if not isinstance(value, str) or len(value) > limit or not regex.fullmatch(value):
        kind = "DNS-1123 label" if label else "DNS-1123 name"
        raise _Refused(
            f"invalid {what}: it must be a {kind} (lowercase letters, digits, '-'"
            f"{'' if label else ' and .'}, starting and ending with a letter or digit, at most {limit} characters);"
            " nothing was changed"
        )


def _check_server(server: str) -> str:
    ok_text = isinstance(server, str) and _SERVER_RE.fullmatch(server.strip()) is not None
    host = registry_key(server) if ok_text else ""
    if not host or len(host) > 253 or not _HOST_RE.fullmatch(host):
        raise _Refused("invalid registry server: it must be a host name or host:port; nothing was changed")
    return host


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dry_run": "All"} if dry_run else {}


def _prefix(dry_run: bool) -> str:
    return "dry run: " if dry_run else ""


class KubeActions:
    """Mutating actions on the cluster, each validated, dry-runnable and idempotent."""

    def __init__(self, api_client: Any, *, timeout_s: float = 10.0) -> None:
        # Any: the generated stubs ask for model objects where the client also takes plain dicts (sent as is).
        self._core: Any = k8s.CoreV1Api(api_client)
        self._timeout_s = timeout_s
        self._as: dict[str, Any] = {}  # `_headers` of every action request: impersonation, when acting as someone
        self._who: str | None = None

    def acting_as(self, identity: KubeIdentity | None) -> KubeActions:
        """These actions sent with `Impersonate-User`/`Impersonate-Group` of `identity` (None: as the bot itself).

        The API server then authorises each request as that person, and its audit log names them. The reads that pin
        a proposal's target (`pin`) stay the bot's own."""
        if identity is None:
            return self
        acting = copy.copy(self)
        headers: dict[str, Any] = {"Impersonate-User": identity.user}
        if identity.groups:
            headers["Impersonate-Group"] = list(identity.groups)  # one header line each (client.wire_headers)
        acting._as = {"_headers": headers}
        acting._who = identity.user
        return acting

    async def _call(self, call: Awaitable[T], verb: str, resource: str, namespace: str) -> T:
        """Run one API call, bounded; turn refusals into messages that name the missing permission."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except ApiException as exc:
            if exc.status == 403 and self._who is not None:
                if _forbidden_kind(exc) in ("users", "groups", "serviceaccounts"):
                    raise _Refused(
                        f"the bot may not act as `{self._who}` (its RBAC needs impersonate on users and groups);"
                        " nothing was changed"
                    ) from None
                raise _Refused(
                    f"forbidden: `{self._who}` may not {verb} {resource} in namespace {namespace} (the API server"
                    " refused it as that user); nothing was changed"
                ) from None
            if exc.status == 403:
                raise _Refused(
                    f"forbidden: the bot is not allowed to {verb} {resource} in namespace {namespace}"
                    f' (RBAC needs verb "{verb}" on "{resource}"); nothing was changed'
                ) from None
            if exc.status == 401:
                raise _Refused("the API server refused the bot's credentials (401); nothing was changed") from None
            raise
        except TimeoutError:
            raise _Refused(f"the API server did not answer in time ({verb} {resource}); try again") from None

    async def _run(self, action: str, dry_run: bool, body: Awaitable[ActionResult]) -> ActionResult:
        try:
            result = await body
        except _Refused as exc:
            result = ActionResult(ok=False, message=str(exc), dry_run=dry_run)
        except ApiException as exc:
            if exc.status == 422:
                # Invalid: retrying cannot help; say what the server said (its Status message names fields, and
                # kube-apiserver redacts Secret contents in it).
                result = ActionResult(
                    ok=False,
                    message=f"the API server rejected the change as invalid: {_status_message(exc)}; nothing was"
                    " changed",
                    dry_run=dry_run,
                )
            else:
                reason = "conflicting concurrent change" if exc.status == 409 else f"HTTP {exc.status}"
                result = ActionResult(ok=False, message=f"the API server refused: {reason}; try again", dry_run=dry_run)
        except (OSError, ValueError) as exc:  # aiohttp.ClientError is an OSError
            result = ActionResult(
                ok=False, message=f"could not reach the API server ({type(exc).__name__})", dry_run=dry_run
            )
        log.info("action %s dry_run=%s ok=%s changed=%s", action, dry_run, result.ok, result.changed)
        return result

    # ---- delete_pod ----

    async def pin(self, kind: str, ns: str, name: str) -> dict[str, str]:
        """The target's identity now, recorded in a proposal and checked before it runs: {"pin_uid", "pin_rv"}
        ("absent" when it does not exist; {} when it cannot be read or the names are invalid)."""
        readers = {
            "pod": self._core.read_namespaced_pod,
            "secret": self._core.read_namespaced_secret,
            "serviceaccount": self._core.read_namespaced_service_account,
        }
        try:
            _check_name("namespace", ns, label=True)
            _check_name(f"{kind} name", name)
            async with asyncio.timeout(self._timeout_s):
                obj = await readers[kind](name, ns, _request_timeout=self._timeout_s)
        except ApiException as exc:
            return {"pin_uid": "absent", "pin_rv": "absent"} if exc.status == 404 else {}
        except (_Refused, KeyError, OSError, TimeoutError, ValueError):
            return {}
        return {"pin_uid": str(obj.metadata.uid or ""), "pin_rv": str(obj.metadata.resource_version or "")}

    async def delete_pod(self, ns: str, pod: str, *, dry_run: bool, uid: str | None = None) -> ActionResult:
        """Delete a pod so its controller makes a fresh one; refuse for a bare pod (it would be gone for good).

        With `uid` (the pod a proposal was made for) only that pod is deleted: the delete carries
        `preconditions.uid`, so a new pod of the same name (a StatefulSet's replacement) is never deleted instead;
        the API server answers 409 Conflict then. A pod already Terminating is left to finish."""
        return await self._run("delete_pod", dry_run, self._delete_pod(ns, pod, dry_run, uid))

    async def _delete_pod(self, ns: str, pod: str, dry_run: bool, uid: str | None) -> ActionResult:
        _check_name("namespace", ns, label=True)
        _check_name("pod name", pod)
        try:
            obj = await self._call(
                self._core.read_namespaced_pod(pod, ns, **self._as, _request_timeout=self._timeout_s), "get", "pods", ns
            )
        except ApiException as exc:
            if exc.status == 404:
                raise _Refused(f"pod {ns}/{pod} does not exist (any more); nothing to delete") from None
            raise
        current_uid = obj.metadata.uid or None
        if uid and current_uid and uid != current_uid:
            raise _Refused(_replaced(ns, pod))
        owner = controller_of(owner_refs(obj.metadata))
        if owner is None:
            raise _Refused(
                f"bare pod: deleting it would remove it for good (pod {ns}/{pod} has no controller);"
                " nothing was changed"
            )
        if obj.metadata.deletion_timestamp is not None:
            since = obj.metadata.deletion_timestamp
            since_text = since.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(since, "strftime") else str(since)
            return ActionResult(
                ok=True,
                message=f"{_prefix(dry_run)}pod {ns}/{pod} is already being deleted (Terminating since {since_text});"
                " nothing to do",
                dry_run=dry_run,
                target_uid=current_uid,
            )
        expected = uid or current_uid
        options = {"preconditions": {"uid": expected}} if expected else None
        try:
            await self._call(
                self._core.delete_namespaced_pod(
                    pod, ns, body=options, **_dry(dry_run), **self._as, _request_timeout=self._timeout_s
                ),
                "delete",
                "pods",
                ns,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise _Refused(f"pod {ns}/{pod} went away meanwhile; nothing was deleted") from None
            if exc.status == 409:  # preconditions.uid did not match: a new pod of the same name
                raise _Refused(_replaced(ns, pod)) from None
            raise
        owner_text = f"{owner.kind} {owner.name}"
        if dry_run:
            msg = f"dry run: pod {ns}/{pod} would be deleted and {owner_text} would create a replacement"
        else:
            msg = f"deleted pod {ns}/{pod}; {owner_text} will create a replacement that pulls again"
        return ActionResult(ok=True, message=msg, dry_run=dry_run, changed=not dry_run, target_uid=expected)

    # ---- upsert_pull_secret ----

    async def upsert_pull_secret(
        self, ns: str, name: str, server: str, username: str, password: str, *, dry_run: bool
    ) -> ActionResult:
        """Create a kubernetes.io/dockerconfigjson secret, or replace the entry for `server` in the existing one."""
        return await self._run(
            "upsert_pull_secret", dry_run, self._upsert(ns, name, server, username, password, dry_run)
        )

    async def _upsert(
        self, ns: str, name: str, server: str, username: str, password: str, dry_run: bool
    ) -> ActionResult:
        _check_name("namespace", ns, label=True)
        _check_name("secret name", name)
        host = _check_server(server)
        if not isinstance(username, str) or not username or ":" in username or len(username) > 1024:
            raise _Refused("invalid username: it must be non-empty and hold no ':'; nothing was changed")
        if not isinstance(password, str) or not password or len(password) > 16384:
            raise _Refused("invalid password: it must be non-empty; nothing was changed")
        new_fp = fingerprint(host, username, password)
        for _ in range(_CONFLICT_ATTEMPTS):
            existing = await self._read_secret(ns, name)
            if existing is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": ns},
                    "type": DOCKERCONFIGJSON_TYPE,
                    "data": build_dockerconfigjson(host, username, password),
                }
                try:
                    await self._call(
                        self._core.create_namespaced_secret(
                            ns, body, **_dry(dry_run), **self._as, _request_timeout=self._timeout_s
                        ),
                        "create",
                        "secrets",
                        ns,
                    )
                except ApiException as exc:
                    if exc.status == 409:  # created meanwhile: read it and replace
                        continue
                    if exc.status == 404:
                        raise _Refused(f"namespace {ns} does not exist; nothing was changed") from None
                    raise
                return ActionResult(
                    ok=True,
                    message=f"{_prefix(dry_run)}{'would create' if dry_run else 'created'} pull secret {ns}/{name}"
                    f" for {host} (credential {new_fp})",
                    dry_run=dry_run,
                    changed=not dry_run,
                    new_fingerprint=new_fp,
                )
            if existing.type != DOCKERCONFIGJSON_TYPE:
                raise _Refused(
                    f"secret {ns}/{name} exists with type {existing.type or 'unknown'}: a secret's type cannot change,"
                    " so it was left alone; pick another name"
                )
            config = parse_secret(existing.type, existing.data)
            entry = config.entry_for(host) if config.parses else None
            old_fp = entry.fingerprint() if entry is not None else None
            if old_fp == new_fp and entry is not None and entry.registry == host:
                return ActionResult(
                    ok=True,
                    message=f"pull secret {ns}/{name} already holds this credential for {host} (credential {new_fp});"
                    " nothing to change",
                    dry_run=dry_run,
                    old_fingerprint=old_fp,
                    new_fingerprint=new_fp,
                )
            _check_ours(ns, name, existing)
            data, kept = _merged_data(existing.data, host, username, password)
            try:
                await self._patch_secret_data(ns, name, existing, data, {}, dry_run)
            except ApiException as exc:
                if exc.status == 409:  # changed meanwhile: read again
                    continue
                raise
            others = f", keeping {kept} other registr{'y' if kept == 1 else 'ies'}" if kept else ""
            return ActionResult(
                ok=True,
                message=f"{_prefix(dry_run)}{'would replace' if dry_run else 'replaced'} the credential for {host}"
                f" in pull secret {ns}/{name} ({old_fp or 'none'} -> {new_fp}){others}",
                dry_run=dry_run,
                changed=not dry_run,
                old_fingerprint=old_fp,
                new_fingerprint=new_fp,
            )
        raise _Refused(f"pull secret {ns}/{name} kept changing while the bot wrote it; try again")

    async def _patch_secret_data(
        self,
        ns: str,
        name: str,
        existing: Any,
        data: Mapping[str, str | None],
        annotations: dict[str, str],
        dry_run: bool,
    ) -> None:
        """A JSON merge patch of `data` (and our own annotations) only, guarded by the resourceVersion read.

        A PUT of the whole Secret would drop what other controllers keep there (ownerReferences, finalizers,
        their labels and annotations, `immutable`); a merge patch leaves every field it does not name, and a
        resourceVersion in the patch makes it fail with 409 if the Secret changed since it was read
        (apiserver endpoints/handlers/patch.go: the patched object's resourceVersion is a precondition).
        """
        metadata: dict[str, Any] = {"resourceVersion": existing.metadata.resource_version}
        if annotations:
            metadata["annotations"] = annotations
        await self._call(
            self._core.patch_namespaced_secret(
                name,
                ns,
                {"metadata": metadata, "data": dict(data)},
                **_dry(dry_run),
                _content_type="application/merge-patch+json",
                **self._as,
                _request_timeout=self._timeout_s,
            ),
            "patch",
            "secrets",
            ns,
        )

    async def _read_secret(self, ns: str, name: str) -> Any | None:
        try:
            return await self._call(
                self._core.read_namespaced_secret(name, ns, **self._as, _request_timeout=self._timeout_s),
                "get",
                "secrets",
                ns,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ---- copy_secret ----

    async def copy_secret(self, src_ns: str, src: str, dst_ns: str, dst: str, *, dry_run: bool) -> ActionResult:
        """Copy a secret's type and data (no uid, resourceVersion, owners) to another namespace or name."""
        return await self._run("copy_secret", dry_run, self._copy(src_ns, src, dst_ns, dst, dry_run))

    async def _copy(self, src_ns: str, src: str, dst_ns: str, dst: str, dry_run: bool) -> ActionResult:
        _check_name("source namespace", src_ns, label=True)
        _check_name("source secret name", src)
        _check_name("target namespace", dst_ns, label=True)
        _check_name("target secret name", dst)
        if (src_ns, src) == (dst_ns, dst):
            raise _Refused("source and target are the same secret; nothing was changed")
        source = await self._read_secret(src_ns, src)
        if source is None:
            raise _Refused(f"secret {src_ns}/{src} does not exist; nothing was copied")
        if source.type not in COPYABLE_TYPES:
            # Only pull secrets are ever copied: the bot's RBAC reads every Secret, a user's grant does not.
            raise _Refused(
                f"secret {src_ns}/{src} is not a pull secret (type {source.type or 'unknown'}); only"
                f" {' and '.join(sorted(COPYABLE_TYPES))} secrets are copied; nothing was copied"
            )
        data = dict(source.data or {})
        for _ in range(_CONFLICT_ATTEMPTS):
            target = await self._read_secret(dst_ns, dst)
            metadata: dict[str, Any] = {
                "name": dst,
                "namespace": dst_ns,
                "annotations": {COPIED_FROM_ANNOTATION: f"{src_ns}/{src}"},
            }
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": source.type, "data": data}
            try:
                if target is None:
                    await self._call(
                        self._core.create_namespaced_secret(
                            dst_ns, body, **_dry(dry_run), **self._as, _request_timeout=self._timeout_s
                        ),
                        "create",
                        "secrets",
                        dst_ns,
                    )
                    verb = "would copy" if dry_run else "copied"
                else:
                    if target.type != source.type:
                        raise _Refused(
                            f"secret {dst_ns}/{dst} exists with type {target.type or 'unknown'}, not {source.type}:"
                            " a secret's type cannot change, so it was left alone"
                        )
                    if dict(target.data or {}) == data:
                        return ActionResult(
                            ok=True,
                            message=f"secret {dst_ns}/{dst} already holds the same data as {src_ns}/{src};"
                            " nothing to change",
                            dry_run=dry_run,
                        )
                    _check_ours(dst_ns, dst, target)
                    # The source's data exactly (keys it lacks removed), and our annotation; nothing else.
                    removed: dict[str, str | None] = {k: None for k in (target.data or {}) if k not in data}
                    annotations = {COPIED_FROM_ANNOTATION: f"{src_ns}/{src}"}
                    await self._patch_secret_data(dst_ns, dst, target, {**removed, **data}, annotations, dry_run)
                    verb = "would overwrite" if dry_run else "overwrote"
            except ApiException as exc:
                if exc.status == 409:
                    continue
                if exc.status == 404 and target is None:
                    raise _Refused(f"namespace {dst_ns} does not exist; nothing was copied") from None
                raise
            return ActionResult(
                ok=True,
                message=f"{_prefix(dry_run)}{verb} secret {dst_ns}/{dst} from {src_ns}/{src}"
                f" (type {source.type or 'unknown'})",
                dry_run=dry_run,
                changed=not dry_run,
            )
        raise _Refused(f"secret {dst_ns}/{dst} kept changing while the bot wrote it; try again")

    # ---- link_secret ----

    async def link_secret(self, ns: str, serviceaccount: str, secret: str, *, dry_run: bool) -> ActionResult:
        """Add `secret` to the ServiceAccount's imagePullSecrets if absent (JSON patch guarded by resourceVersion)."""
        return await self._run("link_secret", dry_run, self._link(ns, serviceaccount, secret, dry_run))

    async def _link(self, ns: str, sa_name: str, secret: str, dry_run: bool) -> ActionResult:
        _check_name("namespace", ns, label=True)
        _check_name("serviceaccount name", sa_name)
        _check_name("secret name", secret)
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                sa = await self._call(
                    self._core.read_namespaced_service_account(
                        sa_name, ns, **self._as, _request_timeout=self._timeout_s
                    ),
                    "get",
                    "serviceaccounts",
                    ns,
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise _Refused(f"serviceaccount {ns}/{sa_name} does not exist; nothing was changed") from None
                raise
            current = [ref.name for ref in (sa.image_pull_secrets or ())]
            if secret in current:
                return ActionResult(
                    ok=True,
                    message=f"serviceaccount {ns}/{sa_name} already lists pull secret {secret}; nothing to change",
                    dry_run=dry_run,
                )
            # ServiceAccount.imagePullSecrets has no patch merge key: a strategic merge patch would replace the
            # list on a real API server. A JSON patch appends, and its `test` makes it fail on a concurrent change.
            ops: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": sa.metadata.resource_version}
            ]
            if sa.image_pull_secrets:
                ops.append({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}})
            else:
                ops.append({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}]})
            try:
                await self._call(
                    self._core.patch_namespaced_service_account(
                        sa_name, ns, ops, **_dry(dry_run), **self._as, _request_timeout=self._timeout_s
                    ),
                    "patch",
                    "serviceaccounts",
                    ns,
                )
            except ApiException as exc:
                if exc.status in (409, 422):  # the test op failed: the ServiceAccount changed meanwhile
                    continue
                raise
            note = await self._secret_note(ns, secret)
            return ActionResult(
                ok=True,
                message=f"{_prefix(dry_run)}{'would add' if dry_run else 'added'} pull secret {secret} to"
                f" serviceaccount {ns}/{sa_name}{note}",
                dry_run=dry_run,
                changed=not dry_run,
            )
        raise _Refused(f"serviceaccount {ns}/{sa_name} kept changing while the bot patched it; try again")

    async def _secret_note(self, ns: str, secret: str) -> str:
        try:
            found = await self._read_secret(ns, secret)
        except (_Refused, ApiException):
            return ""
        if found is None:
            return f" (note: secret {ns}/{secret} does not exist yet; pods will not pull with it until it does)"
        return ""


def _replaced(ns: str, pod: str) -> str:
    return (
        f"pod {ns}/{pod} is no longer the pod this was proposed for: it was replaced by a new pod of the same name"
        " (uid precondition failed); nothing was deleted"
    )


def _status(exc: ApiException) -> dict[str, Any]:
    """The Status object an API error carries ({} when its body is not one)."""
    try:
        status = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        return {}
    return status if isinstance(status, dict) else {}


def _forbidden_kind(exc: ApiException) -> str:
    """The resource a 403 Status names in its details ("users" for a refused impersonation)."""
    details = _status(exc).get("details")
    return str(details.get("kind", "")) if isinstance(details, dict) else ""


def _status_message(exc: ApiException) -> str:
    message = _status(exc).get("message")
    return str(message)[:300] if message else f"HTTP {exc.status}"


def _check_ours(ns: str, name: str, secret: Any) -> None:
    """Refuse to write a Secret the bot must not change: an immutable one, or one a controller manages.

    A Secret owned by a controller (an ownerReferences entry with controller=true: External Secrets' ExternalSecret,
    Bitnami's SealedSecret, …) is rewritten from its source by that controller, so a change here is lost or fights it.
    """
    if getattr(secret, "immutable", None):
        raise _Refused(
            f"secret {ns}/{name} is immutable (immutable: true): Kubernetes refuses any change to its data;"
            " delete it and create it again, or use another secret name; nothing was changed"
        )
    owner = controller_of(owner_refs(secret.metadata))
    if owner is not None:
        raise _Refused(
            f"secret {ns}/{name} is managed by {owner.kind} {owner.name} (its controller): change the credential"
            f" at that source, a change made here would be overwritten; nothing was changed"
        )


def _merged_data(data: dict[str, str] | None, host: str, username: str, password: str) -> tuple[dict[str, str], int]:
    """New `.dockerconfigjson` data: the existing auths minus any key for `host`, plus the new entry."""
    auths: dict[str, Any] = {}
    raw = (data or {}).get(DOCKERCONFIGJSON_KEY)
    if isinstance(raw, str):
        try:
            doc = json.loads(base64.b64decode(raw, validate=True))
        except (ValueError, binascii.Error, RecursionError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("auths"), dict):
            auths = {k: v for k, v in doc["auths"].items() if isinstance(k, str) and registry_key(k) != host}
    auth = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    auths[server_key(host)] = {"username": username, "password": password, "auth": auth}
    payload = json.dumps({"auths": auths}, separators=(",", ":"), sort_keys=True).encode()
    return {DOCKERCONFIGJSON_KEY: base64.b64encode(payload).decode("ascii")}, len(auths) - 1
