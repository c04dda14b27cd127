"""Registry probe: ask the image's registry (OCI distribution API) whether the image can be pulled, and why not.

One probe is a short conversation: ping `/v2/`, answer the auth challenge (Basic, or a Bearer token from
the realm with the pull scope), HEAD the manifest (GET when HEAD cannot tell, or to read an index's
platforms), and list tags when the tag is missing, to suggest the nearest ones. The whole conversation is
bounded by `probe_budget_s`; what was learnt before the budget ran out is kept. Results are cached per
(registry, repository, reference, credential fingerprint) and identical concurrent probes share one
conversation. Credential values and tokens never reach a log, an exception, `ProbeResult.detail` or a repr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from bot import imageref
from bot.imageref import ImageRef
from bot.model import Credentials, ProbeOutcome, ProbeResult
from bot.registry import auth, errors, netguard
from bot.registry.cache import CoalescingCache
from bot.registry.tags import near_names, nearest_names, nearest_tags
from bot.settings import RegistrySettings

log = logging.getLogger(__name__)

DOCKER_HUB_API_HOST = "registry-1.docker.io"
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
MANIFEST_TYPES = frozenset(
    {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
)
MANIFEST_ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
TAG_PAGES_MAX = 10
NEAR_NAME_PROBES = 8
TAGS_MAX = 10_000
PING_TTL_S = 60.0  # how long a registry's /v2/ answer (its auth challenge) is reused
BODY_MAX = 4 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NEXT_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def api_host(registry: str) -> str:
    """The host that serves the distribution API for a normalised registry (`docker.io` is served elsewhere)."""
    return DOCKER_HUB_API_HOST if registry == imageref.DOCKER_HUB else registry


def credential_fingerprint(credentials: Credentials | None) -> str:
    """A short, safe-to-log hash identifying the credentials (empty for anonymous)."""
    if credentials is None:
        return ""
    if credentials.fingerprint:
        return credentials.fingerprint
    raw = f"{credentials.username}\0{credentials.password}".encode()
    return hashlib.sha256(raw).hexdigest()[:12]


class _Stop(Exception):  # control flow inside one probe, never escapes it
    """End the conversation early with this outcome."""

    def __init__(self, outcome: ProbeOutcome, status: int | None, detail: str) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class _Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(slots=True)
class _State:
    """What one probe has learnt so far (kept when the budget runs out)."""

    outcome: ProbeOutcome | None = None
    http_status: int | None = None
    detail: str = ""
    used_credentials: bool = False
    platforms: tuple[str, ...] = ()
    tags_sample_size: int = 0
    nearest: tuple[str, ...] = ()
    ratelimit_limit: str | None = None
    ratelimit_remaining: str | None = None
    digest: str | None = None
    step: str = "ping"
    secrets: list[str] = field(default_factory=list)
    token_status: int | None = None
    token_with_credentials: bool = False
    auth_error: str = ""
    nearest_repositories: tuple[str, ...] = ()
    repositories_checked: bool = False


class _Conversation:
    """One probe's exchange with one registry: keeps the Authorization header and the secrets to scrub."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: URL,
        repository: str,
        credentials: Credentials | None,
        ssl_context: ssl.SSLContext | None,
        state: _State,
        policy: netguard.NetworkPolicy,
    ) -> None:
        self.policy = policy
        self.session = session
        self.base = base
        self.repository = repository
        self.credentials = credentials
        self.ssl_context = ssl_context
        self.state = state
        self.authorization: str | None = None
        self.auth_tried = False
        if credentials is not None:
            state.secrets.extend([credentials.password, auth.basic_header(credentials), credentials.username])

    async def request(self, method: str, url: URL, accept: str | None = None) -> _Answer:
        """Send one request with the current authorization; answer one 401 challenge and retry once."""
        answer = await self.send(method, url, accept)
        if answer.status == 401 and not self.auth_tried:
            challenge = auth.parse_challenge(answer.headers.get("WWW-Authenticate"))
            if challenge is not None and await self.authenticate(challenge):
                answer = await self.send(method, url, accept)
        return answer

    async def send(self, method: str, url: URL, accept: str | None) -> _Answer:
        """Send one request with the current authorization; follow same-origin redirects only (see netguard)."""
        headers = {"User-Agent": "imagepull-doctor"}
        if accept:
            headers["Accept"] = accept
        if self.authorization:
            headers["Authorization"] = self.authorization
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            async with self.session.request(
                method, url, headers=headers, ssl=self._ssl_for(url), allow_redirects=False
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in REDIRECTS and location:
                    target = netguard.same_origin_redirect(url, location)
                    if target is None:
                        raise _Stop(
                            ProbeOutcome.ERROR,
                            resp.status,
                            f"the registry redirected ({resp.status}) to another host or scheme; not followed",
                        )
                    url = target
                    continue
                body = b"" if method == "HEAD" else await resp.content.read(BODY_MAX)
                self._note_rate_limit(resp.headers)
                return _Answer(resp.status, resp.headers, body)
        raise _Stop(ProbeOutcome.ERROR, None, "too many redirects")

    def error_of(self, body: bytes) -> tuple[str | None, str]:
        """The error code and message of an answer's body, scrubbed of the credentials in every encoding first
        (a registry may echo them; the plain-text start is cut to 120 characters only after scrubbing)."""
        text = errors.scrub(body.decode("utf-8", "replace"), self.state.secrets, limit=len(body) + 1)
        return errors.parse_error_body(text)

    def _ssl_for(self, url: URL) -> ssl.SSLContext | bool:
        return self.ssl_context if url.scheme == "https" and self.ssl_context is not None else True

    def _note_rate_limit(self, headers: CIMultiDictProxy[str]) -> None:
        limit, remaining = headers.get("ratelimit-limit"), headers.get("ratelimit-remaining")
        if limit is not None:
            self.state.ratelimit_limit = limit[:64]
        if remaining is not None:
            self.state.ratelimit_remaining = remaining[:64]

    async def authenticate(self, challenge: auth.Challenge) -> bool:
        """Set the Authorization header the challenge asks for; True when there is something new to try."""
        self.auth_tried = True
        if challenge.scheme == "basic":
            if self.credentials is None:
                return False
            self.authorization = auth.basic_header(self.credentials)
            self.state.used_credentials = True
            return True
        if challenge.scheme == "bearer" and challenge.realm:
            self.authorization = "Bearer " + await self._fetch_token(challenge)
            return True
        return False

    async def _fetch_token(self, challenge: auth.Challenge) -> str:
        realm = URL(challenge.realm or "")
        if realm.scheme not in ("http", "https") or not realm.host:
            raise _Stop(ProbeOutcome.ERROR, None, "the registry's token realm is not an http(s) URL")
        headers = {"User-Agent": "imagepull-doctor"}
        send_credentials = self.credentials is not None and (realm.scheme == "https" or self.base.scheme == "http")
        if send_credentials and self.credentials is not None:
            headers["Authorization"] = auth.basic_header(self.credentials)
            self.state.used_credentials = True
        url = realm.update_query(auth.token_query(challenge, self.repository))
        step, self.state.step = self.state.step, "token"
        self.policy.check_url(url)
        async with self.session.get(url, headers=headers, ssl=self._ssl_for(url), allow_redirects=False) as resp:
            body = await resp.content.read(BODY_MAX)
            self._note_rate_limit(resp.headers)
            self.state.token_status = resp.status
            self.state.token_with_credentials = send_credentials
            if resp.status != 200:
                code, message = self.error_of(body)
                outcome = errors.outcome_for_status(resp.status, code)
                text = f"token endpoint answered {resp.status}" + (
                    f": {code or ''} {message}".rstrip() if message else ""
                )
                raise _Stop(outcome, resp.status, text)
        try:
            token = auth.read_token(json.loads(body))
        except ValueError:
            token = None
        if token is None:
            raise _Stop(ProbeOutcome.ERROR, 200, "the token endpoint's answer holds no token")
        self.state.secrets.append(token)
        self.state.step = step
        return token


class RegistryProber:
    """Probes registries for one image at a time; bounded, cached and coalesced."""

    def __init__(self, settings: RegistrySettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self._cache: CoalescingCache[tuple[str, ...], ProbeResult] = CoalescingCache(settings.cache_ttl_s)
        self._insecure = frozenset(imageref.registry_key(h) for h in settings.insecure_registries)
        self._no_probe = frozenset(imageref.registry_key(h) for h in settings.no_probe_registries)
        # What each registry's /v2/ answered lately: its auth challenge, or None when it needs none. A scan asks one
        # registry about hundreds of images; the challenge does not change between them.
        self._pings: dict[str, tuple[float, auth.Challenge | None]] = {}
        self._policy = netguard.NetworkPolicy(settings.allow_networks, settings.allow_registries)
        self._ssl_context: ssl.SSLContext | None = None
        if settings.ca_file is not None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.load_verify_locations(cafile=str(settings.ca_file))

    def __repr__(self) -> str:
        return f"RegistryProber(budget_s={self.settings.probe_budget_s}, cached={len(self._cache.cache)})"

    @property
    def probes_made(self) -> int:
        """Probes that went to a registry: neither answered from the cache nor joined to one under way."""
        return self._cache.computations

    async def probe(
        self,
        ref: ImageRef,
        credentials: Credentials | None,
        node_platform: str | None,
        *,
        fresh: bool = False,
        near_names: bool = True,
    ) -> ProbeResult:
        """What the registry says about `ref`; never raises (but for cancellation). `fresh` skips the cache;
        `near_names=False` skips the search for near repository names after a refusal (the latent-failure scan needs
        only the verdict, and spends no requests on what a diagnosis would tell a user)."""
        if not self.settings.probe_enabled or imageref.registry_key(ref.registry) in self._no_probe:
            return ProbeResult(
                ref.registry, ref.repository, ref.reference, ProbeOutcome.SKIPPED, detail="probing is switched off"
            )
        fingerprint = credential_fingerprint(credentials)
        key = (ref.registry, ref.repository, ref.reference, fingerprint, "near" if near_names else "lean")
        result, shared = await self._cache.get_or_compute(
            key, lambda: self._probe_bounded(ref, credentials, node_platform, near_names), fresh=fresh
        )
        return replace(result, cached=True) if shared else result

    async def close(self) -> None:
        """Stop running probes and close the HTTP session if this prober made it."""
        await self._cache.close()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=8, resolver=self._policy.resolver()),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.probe_budget_s),
            )
        return self._session

    def _base_url(self, registry: str) -> URL:
        scheme = "http" if registry in self._insecure else "https"
        return URL(f"{scheme}://{api_host(registry)}")

    async def _probe_bounded(
        self, ref: ImageRef, credentials: Credentials | None, node_platform: str | None, near_names: bool = True
    ) -> ProbeResult:
        state = _State()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.probe_budget_s):
                await self._converse(ref, credentials, node_platform, state, near_names)
        except _Stop as stop:
            state.outcome, state.http_status, state.detail = stop.outcome, stop.status, stop.detail
        except TimeoutError:
            if state.outcome is None:
                state.outcome = ProbeOutcome.TIMEOUT
                state.detail = f"no answer within {self.settings.probe_budget_s:g} s (during {state.step})"
            else:
                state.detail = (state.detail + "; " if state.detail else "") + f"{state.step} timed out"
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            outcome, detail = errors.outcome_for_exception(exc)
            if state.outcome is None:
                state.outcome, state.detail = outcome, detail
            else:
                state.detail = (state.detail + "; " if state.detail else "") + f"{state.step}: {detail}"
        elapsed_ms = (time.monotonic() - started) * 1000
        result = ProbeResult(
            registry=ref.registry,
            repository=ref.repository,
            reference=ref.reference,
            outcome=state.outcome or ProbeOutcome.ERROR,
            http_status=state.http_status,
            detail=errors.scrub(state.detail, state.secrets),
            used_credentials=state.used_credentials,
            token_status=state.token_status,
            token_with_credentials=state.token_with_credentials,
            auth_error=state.auth_error,
            nearest_repositories=state.nearest_repositories,
            repositories_checked=state.repositories_checked,
            platforms=state.platforms,
            tags_sample_size=state.tags_sample_size,
            nearest_tags=state.nearest,
            ratelimit_limit=state.ratelimit_limit,
            ratelimit_remaining=state.ratelimit_remaining,
            digest=state.digest,
            elapsed_ms=round(elapsed_ms, 1),
        )
        log.info(
            "registry probe %s/%s@%s: %s (http %s) in %.0f ms, credentials %s",
            result.registry,
            result.repository,
            result.reference,
            result.outcome.value,
            result.http_status,
            elapsed_ms,
            credential_fingerprint(credentials) or "none",
        )
        return result

    async def _converse(
        self,
        ref: ImageRef,
        credentials: Credentials | None,
        node_platform: str | None,
        state: _State,
        near_names: bool = True,
    ) -> None:
        base = self._base_url(ref.registry)
        ssl_context = self._ssl_context if base.scheme == "https" else None
        talk = _Conversation(
            self._session_for_use(), base, ref.repository, credentials, ssl_context, state, self._policy
        )
        await self._ping(talk, ref.registry)
        await self._manifest(talk, ref, node_platform)
        if state.outcome == ProbeOutcome.MANIFEST_UNKNOWN and ref.digest is None:
            await self._tags(talk, ref)
        refused = state.outcome in (ProbeOutcome.NAME_UNKNOWN, ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN)
        if refused and near_names:
            await self._near_repositories(talk, ref, credentials)

    async def _near_repositories(self, talk: _Conversation, ref: ImageRef, credentials: Credentials | None) -> None:
        """Existing repositories near a missing (or refused) one: from `/v2/_catalog`, else by asking for the tags
        of a few near names (adjacent letters swapped, a doubled letter dropped) with the same credentials."""
        state = talk.state
        state.step = "repositories"
        catalog = _Conversation(
            talk.session, talk.base, ref.repository, credentials, talk.ssl_context, _State(), talk.policy
        )
        answer = await catalog.send("GET", (talk.base / "v2" / "_catalog").with_query({"n": "1000"}), None)
        state.repositories_checked = True
        if answer.status == 200:
            try:
                data: Any = json.loads(answer.body)
            except ValueError:
                data = None
            names = data.get("repositories") if isinstance(data, dict) else None
            if ref.repository in (names or []):
                return  # the repository exists: a refusal is about access, not about its name
            repos = [r for r in names or [] if isinstance(r, str)]
            candidates = list(nearest_names(ref.repository, repos))
            checked = True
        else:
            candidates = near_names(ref.repository)[:NEAR_NAME_PROBES]
            checked = False
        with_tag: list[str] = []
        without: list[str] = []
        for candidate in candidates:
            probe_state = _State()
            other = _Conversation(
                talk.session, talk.base, candidate, credentials, talk.ssl_context, probe_state, talk.policy
            )
            url = (talk.base / "v2" / candidate / "tags" / "list").with_query({"n": "1000"})
            try:
                answer = await other.request("GET", url)
            except _Stop:
                continue
            state.secrets.extend(probe_state.secrets)
            if answer.status != 200:
                if checked:
                    without.append(candidate)
                continue
            try:
                listed: Any = json.loads(answer.body)
            except ValueError:
                listed = None
            tags = listed.get("tags") if isinstance(listed, dict) else None
            has = ref.tag is None or (isinstance(tags, list) and ref.tag in tags)
            (with_tag if has else without).append(candidate)
        # Names that hold the wanted tag first: `team/ap:1.2.3` is nearer to `team/app` (has 1.2.3) than `team/api`.
        state.nearest_repositories = tuple((with_tag + without)[:3])

    async def _ping(self, talk: _Conversation, registry: str) -> None:
        talk.state.step = "ping"
        known = self._pings.get(registry)
        if known is not None and time.monotonic() < known[0]:
            if known[1] is not None:
                await talk.authenticate(known[1])
            return
        answer = await talk.send("GET", talk.base / "v2/", None)
        if answer.status == 200:
            self._pings[registry] = (time.monotonic() + PING_TTL_S, None)
        if answer.status == 401:
            challenge = auth.parse_challenge(answer.headers.get("WWW-Authenticate"))
            if challenge is not None:
                self._pings[registry] = (time.monotonic() + PING_TTL_S, challenge)
                await talk.authenticate(challenge)
        elif answer.status >= 300:
            code, message = talk.error_of(answer.body)
            outcome = errors.outcome_for_status(answer.status, code)
            if outcome in (ProbeOutcome.MANIFEST_UNKNOWN, ProbeOutcome.NAME_UNKNOWN):
                outcome = ProbeOutcome.ERROR
                message = "no registry API at /v2/"
            raise _Stop(outcome, answer.status, f"/v2/ answered {answer.status}: {code or ''} {message}".strip())

    async def _manifest(self, talk: _Conversation, ref: ImageRef, node_platform: str | None) -> None:
        state = talk.state
        state.step = "manifest"
        url = talk.base / "v2" / ref.repository / "manifests" / ref.reference
        # On Docker Hub a manifest GET counts as a pull, so HEAD comes first there; elsewhere, when the platform
        # matters, one GET answers both whether the reference exists and which platforms it offers.
        direct = node_platform is not None and ref.registry != "docker.io"
        answer = await talk.request("GET" if direct else "HEAD", url, MANIFEST_ACCEPT)
        if answer.status == 200:
            state.digest = answer.headers.get("Docker-Content-Digest") or None
        media_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
        is_index = media_type in INDEX_TYPES
        # HEAD carries no error body: GET to read the error code (an error answer is not a pull).
        useful = answer.status == 200 and media_type in INDEX_TYPES | MANIFEST_TYPES
        # Read an index on Docker Hub only when the node's platform is known.
        read_index = is_index and answer.status == 200 and (node_platform is not None or ref.registry != "docker.io")
        if not direct and (not useful or read_index):
            answer = await talk.request("GET", url, MANIFEST_ACCEPT)
            media_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
        state.http_status = answer.status
        code, message = (None, "")
        if answer.status >= 300 and answer.body:
            code, message = talk.error_of(answer.body)
        state.outcome = errors.outcome_for_status(answer.status, code)
        if answer.status in (401, 403):
            refusal = auth.parse_challenge(answer.headers.get("WWW-Authenticate"))
            state.auth_error = (refusal.params.get("error", "") if refusal else "")[:64]
        if state.outcome != ProbeOutcome.OK:
            state.detail = f"{code}: {message}" if code else (message or f"HTTP {answer.status}")
        elif answer.body:
            state.platforms = _platforms(answer.body, media_type)

    async def _tags(self, talk: _Conversation, ref: ImageRef) -> None:
        state = talk.state
        state.step = "tags"
        url: URL | None = (talk.base / "v2" / ref.repository / "tags" / "list").with_query({"n": "1000"})
        tags: list[str] = []
        pages = 0
        while url is not None and pages < TAG_PAGES_MAX and len(tags) < TAGS_MAX:
            answer = await talk.request("GET", url)
            pages += 1
            if answer.status != 200:
                code, message = talk.error_of(answer.body)
                if answer.status == 404 and code == "NAME_UNKNOWN":
                    state.outcome = ProbeOutcome.NAME_UNKNOWN
                    state.detail = f"{code}: {message}"
                break
            try:
                data: Any = json.loads(answer.body)
            except ValueError:
                break
            page = data.get("tags") if isinstance(data, dict) else None
            tags.extend(t for t in (page or []) if isinstance(t, str))
            state.tags_sample_size = len(tags)
            if ref.tag is not None:
                state.nearest = nearest_tags(ref.tag, tags)
            url = _next_link(answer.headers.get("Link"), url)


def _platforms(body: bytes, media_type: str) -> tuple[str, ...]:
    """The `os/architecture[/variant]` entries of an index (attestation entries `unknown/unknown` left out)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    if media_type not in INDEX_TYPES and data.get("mediaType") not in INDEX_TYPES:
        return ()
    out: list[str] = []
    for entry in data.get("manifests") or []:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(platform, dict):
            continue
        os_name, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str) or "unknown" in (os_name, arch):
            continue
        name = f"{os_name}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")
        if name not in out:
            out.append(name)
    return tuple(out)


def _next_link(header: str | None, current: URL) -> URL | None:
    """The `rel="next"` target of a Link header, resolved against `current`, if on the same origin."""
    if not header:
        return None
    m = _NEXT_LINK_RE.search(header)
    if m is None:
        return None
    target = current.join(URL(m.group(1)))
    return target if target.origin() == current.origin() else None
