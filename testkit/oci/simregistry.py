"""SimRegistry: a small OCI distribution registry (aiohttp) with auth modes and fault knobs.

For tests, the demo and the benches, where a real registry cannot answer 429, 403, 5xx, hang or speak
Bearer tokens. Images are added from Python; requests are recorded in `requests`.

    sim = SimRegistry()
    host = await sim.start()                      # "127.0.0.1:PORT", plain HTTP
    sim.add_image("team/app", "1.2.3", platforms=["linux/amd64", "linux/arm64"])
    sim.require_auth("team/*", "robot", "s3cret", mode="bearer")
    sim.set_fault("rate_limit")                   # or "forbidden", "server_error", "hang", None
    await sim.stop()

`SimRegistry(hub=True)` answers as Docker Hub documents it and as the distribution token spec
(distribution/distribution docs/spec/auth/token.md) describes: every request needs a Bearer token from the realm;
anonymous tokens are granted for any scope, but carry no access to a repository that does not exist or is
private, so the manifest request then gets 401 with `error="insufficient_scope"` in both cases (Docker Hub does not
tell a missing repository from a private one); `/v2/_catalog` is refused. `hub_pulls_left` imitates
https://docs.docker.com/docker-hub/usage/pulls/ : a manifest GET counts as a pull and gets 429 TOOMANYREQUESTS
with `ratelimit-limit`/`ratelimit-remaining` headers once none is left, while HEAD still answers 200 with the
headers (HEAD requests do not count).
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
HUB_RATELIMIT_BODY = {
    "errors": [
        {
            "code": "TOOMANYREQUESTS",
            "message": "You have reached your pull rate limit. You may increase the limit by authenticating and "
            "upgrading: https://www.docker.com/increase-rate-limit",
        }
    ]
}
FAULTS = frozenset({"rate_limit", "forbidden", "server_error", "hang"})
SERVICE = "sim-registry"


@dataclass(slots=True)
class _Rule:
    pattern: str
    username: str
    password: str
    mode: str
    anonymous_status: int


@dataclass(slots=True)
class _Fault:
    kind: str
    on: str  # "all" | "ping" | "manifests" | "tags" | "token"
    status: int


@dataclass(slots=True)
class _Repo:
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (media type, body)


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


class SimRegistry:
    """An OCI registry on 127.0.0.1 (port 0 by default) with auth modes and faults set from Python."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, hub: bool = False) -> None:
        self._bind = (host, port)
        self.hub = hub
        self.hub_pulls_left: int | None = None  # hub mode: pulls left in the window (None: no limit)
        self.hub_limit = 100
        self.catalog = True  # serve /v2/_catalog (never in hub mode)
        self._repos: dict[str, _Repo] = {}
        self._rules: list[_Rule] = []
        self._fault: _Fault | None = None
        self._tokens: dict[str, frozenset[str]] = {}  # token -> repositories it may pull
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.ratelimit: tuple[int, int] | None = None  # (limit, remaining) sent as Docker Hub headers
        self.tags_page_size: int | None = None  # cap on tags per page, as hosted registries do

    async def start(self) -> str:
        """Serve and return `host:port`."""
        app = web.Application()
        app.router.add_route("*", "/token", self._token)
        app.router.add_route("*", "/v2/", self._ping)
        app.router.add_route("*", r"/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_route("*", r"/v2/{name:.+}/tags/list", self._tags)
        app.router.add_route("*", "/v2/_catalog", self._catalog)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._bind[0], self._bind[1])
        await site.start()
        address = self._runner.addresses[0]
        self.host = f"{address[0]}:{address[1]}"
        return self.host

    async def stop(self) -> None:
        """Release hanging requests and stop serving."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- knobs ----

    def add_image(
        self,
        repo: str,
        tag: str,
        platforms: list[str] | tuple[str, ...] = ("linux/amd64",),
        *,
        index: bool | None = None,
    ) -> str:
        """Add an image (an index when several platforms or `index=True`); return its manifest digest."""
        entry = self._repos.setdefault(repo, _Repo())
        children = [self._add_manifest(entry, repo, tag, p) for p in platforms]
        if index is None:
            index = len(children) != 1
        if not index:
            digest = children[0][0]
        else:
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [
                        {"mediaType": OCI_MANIFEST, "digest": d, "size": size, "platform": _platform_dict(p)}
                        for (d, size), p in zip(children, platforms, strict=True)
                    ],
                },
                sort_keys=True,
            ).encode()
            digest = _digest(body)
            entry.manifests[digest] = (OCI_INDEX, body)
        entry.tags[tag] = digest
        return digest

    def _add_manifest(self, entry: _Repo, repo: str, tag: str, platform: str) -> tuple[str, int]:
        config = json.dumps({"architecture": platform.split("/")[1], "os": platform.split("/")[0], "tag": tag})
        layer = f"{repo}:{tag}:{platform}".encode()
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _digest(config.encode()), "size": len(config)},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer), "size": 1}
                ],
            },
            sort_keys=True,
        ).encode()
        digest = _digest(body)
        entry.manifests[digest] = (OCI_MANIFEST, body)
        return digest, len(body)

    def remove_tag(self, repo: str, tag: str) -> None:
        """Forget a tag, as a retention policy does (its manifests stay reachable by digest)."""
        self._repos.get(repo, _Repo()).tags.pop(tag, None)

    def require_auth(
        self, repo: str, username: str, password: str, mode: str = "basic", *, anonymous_status: int = 401
    ) -> None:
        """Protect `repo` (a glob, "*" for all) with these credentials, by HTTP Basic or Docker-style Bearer tokens.

        In bearer mode an anonymous token is granted without access (as Docker Hub does), and the
        manifest request then gets `anonymous_status` (401 or 403).
        """
        if mode not in ("basic", "bearer"):
            raise ValueError("mode must be 'basic' or 'bearer'")
        self._rules.append(_Rule(repo, username, password, mode, anonymous_status))

    def set_fault(self, kind: str | None, *, on: str = "manifests", status: int = 503) -> None:
        """Answer requests on `on` ("all", "ping", "manifests", "tags", "token") with a fault, or clear it (None).

        Kinds: "rate_limit" (429 with Docker Hub's headers and body), "forbidden" (403 DENIED),
        "server_error" (`status`, 503 by default), "hang" (no answer until `stop()`).
        """
        if kind is None:
            self._fault = None
            return
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        self._fault = _Fault(kind, on, status)

    def count(self, path_part: str = "", method: str | None = None) -> int:
        """How many requests had `path_part` in their path (and `method`, when given)."""
        return sum(1 for m, p in self.requests if path_part in p and (method is None or m == method))

    # ---- handlers ----

    def _rule_for(self, repo: str | None) -> _Rule | None:
        if self.hub and (repo is None or repo not in self._repos):
            # Docker Hub: a repository that does not exist looks like a private one (token without access).
            return _Rule("*", "\0no-such-user", secrets.token_hex(8), "bearer", 401)
        for rule in self._rules:
            if repo is None or fnmatch.fnmatchcase(repo, rule.pattern):
                return rule
        return None

    async def _faulted(self, request: web.Request, where: str) -> web.StreamResponse | None:
        self.requests.append((request.method, request.path_qs))
        fault = self._fault
        if fault is None or fault.on not in ("all", where):
            return None
        if fault.kind == "hang":
            await self._released.wait()
            return web.json_response(_errors("UNAVAILABLE", "the simulator stopped"), status=503)
        if fault.kind == "rate_limit":
            headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
            return web.json_response(HUB_RATELIMIT_BODY, status=429, headers=headers)
        if fault.kind == "forbidden":
            return web.json_response(_errors("DENIED", "requested access to the resource is denied"), status=403)
        return web.json_response(_errors("UNAVAILABLE", "service unavailable"), status=fault.status)

    def _challenge(self, rule: _Rule | None, request: web.Request, repo: str | None) -> str:
        if rule is not None and rule.mode == "basic" and not self.hub:
            return 'Basic realm="sim-registry"'
        realm = f"http://{request.host}/token"
        scope = f',scope="repository:{repo}:pull"' if repo else ""
        return f'Bearer realm="{realm}",service="{SERVICE}"{scope}'

    def _authorized(self, request: web.Request, repo: str | None) -> tuple[bool, int]:
        """Whether the request may read `repo` (None: the ping), and the status to refuse with."""
        rule = self._rule_for(repo)
        if rule is None and self.hub:
            header = request.headers.get("Authorization", "")
            token_ok = header.startswith("Bearer ") and header[len("Bearer ") :] in self._tokens
            if not token_ok:
                return False, 401
            return repo is None or repo in self._tokens[header[len("Bearer ") :]], 401
        if rule is None:
            return True, 200
        header = request.headers.get("Authorization", "")
        if rule.mode == "basic":
            return _basic_matches(header, rule), 401
        if not header.startswith("Bearer "):
            return False, 401
        access = self._tokens.get(header[len("Bearer ") :])
        if access is None:
            return False, 401
        if repo is None:
            return True, 200
        return repo in access, rule.anonymous_status

    def _refuse(self, request: web.Request, repo: str | None, status: int) -> web.Response:
        rule = self._rule_for(repo)
        headers = {"WWW-Authenticate": self._challenge(rule, request, repo)}
        if status == 403:
            return web.json_response(_errors("DENIED", "requested access to the resource is denied"), status=403)
        if request.headers.get("Authorization", "").startswith("Bearer "):
            headers["WWW-Authenticate"] += ',error="insufficient_scope"'
        body = _errors("UNAUTHORIZED", "authentication required")
        return web.json_response(body, status=401, headers=headers)

    def _hub_headers(self) -> dict[str, str]:
        if self.ratelimit is None:
            return {}
        limit, remaining = self.ratelimit
        return {"ratelimit-limit": f"{limit};w=21600", "ratelimit-remaining": f"{remaining};w=21600"}

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        if (faulted := await self._faulted(request, "ping")) is not None:
            return faulted
        if (self._rules or self.hub) and not self._ping_ok(request):
            return web.json_response(
                _errors("UNAUTHORIZED", "authentication required"),
                status=401,
                headers={"WWW-Authenticate": self._challenge(self._rules[0] if self._rules else None, request, None)},
            )
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    def _ping_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not self.hub and self._rules[0].mode == "basic":
            return any(_basic_matches(header, r) for r in self._rules)
        return header.startswith("Bearer ") and header[len("Bearer ") :] in self._tokens

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if (faulted := await self._faulted(request, "token")) is not None:
            return faulted
        header = request.headers.get("Authorization", "")
        presented = header.startswith("Basic ")
        granted: set[str] = set()
        for scope in request.query.getall("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind != "repository" or "pull" not in actions.split(","):
                continue
            rule = self._rule_for(repo)
            if self.hub and repo not in self._repos:
                continue  # Docker Hub: a token is issued, without access to a repository that is not there
            if rule is None or _basic_matches(header, rule):
                granted.add(repo)
            elif presented:
                # Docker Hub refuses wrong credentials at the token endpoint.
                return web.json_response(_errors("UNAUTHORIZED", "incorrect username or password"), status=401)
        if presented and not granted and not any(_basic_matches(header, r) for r in self._rules):
            return web.json_response(_errors("UNAUTHORIZED", "incorrect username or password"), status=401)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = frozenset(granted)
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        if (faulted := await self._faulted(request, "manifests")) is not None:
            return faulted
        repo, reference = request.match_info["name"], request.match_info["reference"]
        ok, status = self._authorized(request, repo)
        if not ok:
            return self._refuse(request, repo, status)
        entry = self._repos.get(repo)
        if entry is None:
            return web.json_response(_errors("NAME_UNKNOWN", "repository name not known to registry"), status=404)
        digest = reference if reference.startswith("sha256:") else entry.tags.get(reference)
        found = entry.manifests.get(digest or "")
        if found is None:
            return web.json_response(_errors("MANIFEST_UNKNOWN", "manifest unknown"), status=404)
        media_type, body = found
        if self.hub_pulls_left is not None:
            headers = {
                "ratelimit-limit": f"{self.hub_limit};w=21600",
                "ratelimit-remaining": f"{max(self.hub_pulls_left, 0)};w=21600",
            }
            if request.method == "GET":
                if self.hub_pulls_left <= 0:
                    return web.json_response(HUB_RATELIMIT_BODY, status=429, headers=headers)
                self.hub_pulls_left -= 1
                headers["ratelimit-remaining"] = f"{self.hub_pulls_left};w=21600"
        else:
            headers = self._hub_headers()
        headers = {"Docker-Content-Digest": digest or "", **headers}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(status=200, headers=headers, content_type=media_type)
        return web.Response(body=body, status=200, headers=headers, content_type=media_type)

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        if (faulted := await self._faulted(request, "tags")) is not None:
            return faulted
        repo = request.match_info["name"]
        ok, status = self._authorized(request, repo)
        if not ok:
            return self._refuse(request, repo, status)
        entry = self._repos.get(repo)
        if entry is None:
            return web.json_response(_errors("NAME_UNKNOWN", "repository name not known to registry"), status=404)
        tags = sorted(entry.tags)
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        n = int(request.query.get("n", "0") or 0)
        if self.tags_page_size is not None:
            n = min(n, self.tags_page_size) if n > 0 else self.tags_page_size
        headers = {}
        if 0 < n < len(tags):
            tags = tags[:n]
            headers["Link"] = f'</v2/{repo}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return web.json_response({"name": repo, "tags": tags}, headers=headers)

    async def _catalog(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.hub or not self.catalog:
            return web.json_response(_errors("UNAUTHORIZED", "authentication required"), status=401)
        return web.json_response({"repositories": sorted(self._repos)})


def _platform_dict(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def _basic_matches(header: str, rule: _Rule) -> bool:
    if not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
    except ValueError:
        return False
    username, _, password = decoded.partition(":")
    return secrets.compare_digest(username, rule.username) and secrets.compare_digest(password, rule.password)
