"""Pull-secret contents: parse `.dockerconfigjson` / `.dockercfg` data, match registries, fingerprint credentials.

Pure: no I/O and no client library. It follows the kubelet's reading of pull secrets
(pkg/credentialprovider/secrets and config.go): a secret counts only when its type is
`kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`, an object with `auths`) or the legacy
`kubernetes.io/dockercfg` (key `.dockercfg`, the auths map at the top level); an entry's `auth` is
base64 "user:password" and wins over `username`/`password`. Problems are described in fixed words:
a problem text never contains any byte of the secret.

Which entry the kubelet sends for an image follows its keyring (kubernetes/kubernetes
pkg/credentialprovider/keyring.go: `BasicDockerKeyring.Add`, `Lookup`, `isDefaultRegistryMatch`, and
`URLsMatch`/`ParseSchemelessURL`/`SplitURL` in url.go). The rules, restated here in our own code:

- a key without a scheme gets `https://`; it is parsed as a URL (an unparsable key is ignored); a path
  starting `/v1/` or `/v2/` loses those three characters; the keyring key is host[:port] plus the
  remaining path unless that path is empty or `/` (so `https://index.docker.io/v1/` is `index.docker.io`);
- keys are tried in reverse lexical order (a longer, more specific key first) and EVERY key that matches
  contributes its credentials, in that order; the kubelet tries them one after the other;
- a key matches the image name (`registry/repository`, without tag or digest, Docker Hub images as
  `docker.io/library/nginx`) when: the ports are equal (both absent, or the same digits); the hosts have
  the same number of dot-separated labels; each key label matches the image label as a shell glob
  (`*` is one label's worth, never a dot); and the key's path is a plain string prefix of the image's path;
- only when no key matched: an image on the default registry (no `.` or `:` in the first component, or
  first component `docker.io` / `index.docker.io`) gets the entry keyed `index.docker.io`.

So `registry-1.docker.io` and `registry.hub.docker.com` keys never apply to Docker Hub images, and
`host/team` applies to `host/team/app` (and, being a plain prefix, to `host/teamx/app`) but not `host/other`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.imageref import registry_key
from bot.model import Credentials

DOCKERCONFIGJSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
DOCKERCFG_KEY = ".dockercfg"

# Shown in problem texts only when it looks like a host[:port] (optionally with a scheme or path).
_SAFE_HOST_RE = re.compile(r"[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?", re.ASCII)
_SAFE_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9./_-]{0,99}", re.ASCII)
_MAX_SECRET_BYTES = 1024 * 1024  # the API server refuses larger Secrets; refuse to parse more


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One `auths` entry: the normalised registry key and its credentials (never printed)."""

    registry: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    key: str | None = None  # the kubelet keyring key (host[:port][/path]); None when the kubelet ignores the entry

    def __repr__(self) -> str:
        return f"AuthEntry(registry={self.registry!r}, key={self.key!r}, username=<redacted>)"

    @property
    def has_basic(self) -> bool:
        """Whether the entry carries a username and password usable for Basic auth or a token request."""
        return bool(self.username) and self.password is not None

    def fingerprint(self) -> str | None:
        """The short fingerprint of this entry's credentials, or None without user and password."""
        if not self.has_basic:
            return None
        return fingerprint(self.registry, self.username or "", self.password or "")


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """What a pull secret holds: its entries, or the reason it cannot be used (`problem`, safe to show)."""

    entries: tuple[AuthEntry, ...] = ()
    problem: str | None = None

    @property
    def parses(self) -> bool:
        """True when the secret can be used by the kubelet (no problem)."""
        return self.problem is None

    @property
    def registries(self) -> tuple[str, ...]:
        """The normalised registry keys of the entries, in order, without duplicates."""
        return tuple(dict.fromkeys(e.registry for e in self.entries))

    def entry_for(self, image: str) -> AuthEntry | None:
        """The first entry the kubelet would send for `image` (`registry/repository`, or a bare registry host)."""
        found = lookup(((None, self),), image)
        return found[0][1] if found else None

    def entries_for(self, image: str) -> tuple[AuthEntry, ...]:
        """Every entry the kubelet would try for `image`, in its order."""
        return tuple(entry for _, entry in lookup(((None, self),), image))


def fingerprint(host: str, username: str, password: str) -> str:
    """sha256 of the normalised host, user and password (NUL-separated); the first 12 hex digits, safe to log."""
    material = "\0".join((registry_key(host), username, password)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()[:12]


DEFAULT_REGISTRY_HOST = "index.docker.io"
_PORT_RE = re.compile(r"[0-9]*", re.ASCII)


def keyring_key(location: str) -> str | None:
    """The kubelet keyring key of an auths key, or None when the kubelet ignores it (unparsable URL)."""
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    netloc = parts.netloc.rpartition("@")[2]  # Go's URL.Host leaves user info out
    if not netloc:
        return None
    _, colon, port = netloc.rpartition(":") if not netloc.endswith("]") else ("", "", "")
    if colon and not _PORT_RE.fullmatch(port):
        return None  # Go's url.Parse refuses a non-numeric port
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return netloc + path if path and path != "/" else netloc


def _split_host(hostport: str) -> tuple[list[str], str]:
    """The dot-separated labels of a host and its port ("" when there is none), like kubelet's SplitURL."""
    if hostport.startswith("["):
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
        return [host], port
    host, colon, port = hostport.rpartition(":")
    if not colon or ":" in host:
        return hostport.split("."), ""
    return host.split("."), port


def _schemeless(url: str) -> tuple[str, str]:
    """host[:port] and path of a URL written without a scheme (kubelet's ParseSchemelessURL)."""
    host, slash, path = url.partition("/")
    return host, slash + path


def _glob_label(pattern: str, label: str) -> bool:
    """Go's filepath.Match for one host label: `*` any run, `?` one character, `[...]`/`[^...]` classes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return False  # Go: ErrBadPattern, treated as no match
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.fullmatch("".join(out), label) is not None
    except re.error:
        return False


def urls_match(glob: str, target: str) -> bool:
    """Whether keyring key `glob` covers image name `target` (both schemeless), by kubelet's URLsMatch rules."""
    glob_host, glob_path = _schemeless(glob)
    target_host, target_path = _schemeless(target)
    glob_labels, glob_port = _split_host(glob_host)
    target_labels, target_port = _split_host(target_host)
    if glob_port != target_port or len(glob_labels) != len(target_labels):
        return False
    if not target_path.startswith(glob_path):
        return False
    return all(_glob_label(g, t) for g, t in zip(glob_labels, target_labels, strict=True))


def is_default_registry_match(image: str) -> bool:
    """Whether `image` is pulled from Docker Hub by its name's shape (kubelet's isDefaultRegistryMatch)."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash:
        return True
    if first in ("docker.io", DEFAULT_REGISTRY_HOST):
        return True
    return not any(c in first for c in ".:")


def lookup(configs: Iterable[tuple[str | None, DockerConfig]], image: str) -> list[tuple[str | None, AuthEntry]]:
    """The (source, entry) pairs the kubelet would try for `image`, in its order, from several secrets' configs.

    `image` is `registry/repository` (ImageRef.name); the configs are the pod's pull secrets in the order of
    `pod.spec.imagePullSecrets`, which the kubelet merges into one keyring before looking up.
    """
    by_key: dict[str, list[tuple[str | None, AuthEntry]]] = {}
    for source, config in configs:
        for entry in config.entries:
            if entry.key is not None:
                by_key.setdefault(entry.key, []).append((source, entry))
    found: list[tuple[str | None, AuthEntry]] = []
    for key in sorted(by_key, reverse=True):
        if urls_match(key, image):
            found.extend(by_key[key])
    if not found and is_default_registry_match(image):
        found.extend(by_key.get(DEFAULT_REGISTRY_HOST, ()))
    return found


def _safe_host(key: str) -> str:
    norm = registry_key(key)
    return norm if _SAFE_HOST_RE.fullmatch(norm) else "an unreadable registry key"


def _b64decode(value: str | bytes) -> bytes | None:
    try:
        raw = value.encode("ascii") if isinstance(value, str) else value
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _b64decode_lenient(value: str) -> bytes | None:
    # The kubelet's decoder accepts unpadded base64 in `auth`; some tools write it so.
    cleaned = value.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    return _b64decode(padded)


def _parse_entry(key: str, value: Any) -> AuthEntry | str:
    where = f"the auths entry for {_safe_host(key)}"
    if not isinstance(value, dict):
        return f"{where} is not a JSON object"
    username = value.get("username")
    password = value.get("password")
    token = value.get("identitytoken") or value.get("identityToken")
    auth = value.get("auth")
    for name, item in (("username", username), ("password", password), ("identitytoken", token), ("auth", auth)):
        if item is not None and not isinstance(item, str):
            return f"{where} has a {name} that is not a string"
    if auth:
        decoded = _b64decode_lenient(auth)
        if decoded is None:
            return f"{where} has an auth value that is not valid base64"
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            return f"{where} has an auth value that is not UTF-8 text once decoded"
        user, colon, pw = text.partition(":")
        if not colon:
            return f"{where} has an auth value without a ':' between user and password"
        username, password = user, pw
    if not username and not token:
        return f"{where} has no credentials (no auth, username or identitytoken)"
    return AuthEntry(
        registry=registry_key(key),
        username=username or None,
        password=password,
        identity_token=token,
        key=keyring_key(key),
    )


def parse_auths(auths: Any) -> DockerConfig:
    """Parse an `auths` map (registry key -> entry) into a DockerConfig."""
    if not isinstance(auths, dict):
        return DockerConfig(problem="the auths field is not a JSON object")
    if not auths:
        return DockerConfig(problem="the auths map is empty: no registry has credentials")
    entries: list[AuthEntry] = []
    for key, value in auths.items():
        if not isinstance(key, str) or not registry_key(key):
            return DockerConfig(problem="an auths entry has an empty registry key")
        parsed = _parse_entry(key, value)
        if isinstance(parsed, str):
            return DockerConfig(entries=tuple(entries), problem=parsed)
        entries.append(parsed)
    return DockerConfig(entries=tuple(entries))


def _load_json(raw: bytes, what: str) -> Any | str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"{what} is not UTF-8 text"
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return f"{what} is not valid JSON"


def parse_dockerconfigjson(raw: bytes) -> DockerConfig:
    """Parse the decoded bytes of `.dockerconfigjson` (an object whose `auths` maps registries to entries)."""
    doc = _load_json(raw, DOCKERCONFIGJSON_KEY)
    if isinstance(doc, str):
        return DockerConfig(problem=doc)
    if not isinstance(doc, dict):
        return DockerConfig(problem=f"{DOCKERCONFIGJSON_KEY} is not a JSON object")
    if "auths" not in doc:
        return DockerConfig(problem=f"{DOCKERCONFIGJSON_KEY} has no auths field")
    return parse_auths(doc["auths"])


def parse_dockercfg(raw: bytes) -> DockerConfig:
    """Parse the decoded bytes of a legacy `.dockercfg` (the auths map itself, at the top level)."""
    doc = _load_json(raw, DOCKERCFG_KEY)
    if isinstance(doc, str):
        return DockerConfig(problem=doc)
    if not isinstance(doc, dict):
        return DockerConfig(problem=f"{DOCKERCFG_KEY} is not a JSON object")
    if "auths" in doc and isinstance(doc["auths"], dict) and len(doc) == 1:
        return DockerConfig(problem=f"{DOCKERCFG_KEY} holds a .dockerconfigjson document (auths nested): wrong type")
    return parse_auths(doc)


def parse_secret(secret_type: str | None, data: Mapping[str, Any] | None) -> DockerConfig:
    """Parse a Secret's type and `data` (values base64, as the API returns them) the way the kubelet would."""
    if secret_type == DOCKERCONFIGJSON_TYPE:
        key, parser = DOCKERCONFIGJSON_KEY, parse_dockerconfigjson
    elif secret_type == DOCKERCFG_TYPE:
        key, parser = DOCKERCFG_KEY, parse_dockercfg
    else:
        shown = secret_type if secret_type and _SAFE_TYPE_RE.fullmatch(secret_type) else "unknown"
        return DockerConfig(
            problem=f"the secret's type is {shown}, not {DOCKERCONFIGJSON_TYPE}: the kubelet ignores it for pulls"
        )
    value = (data or {}).get(key)
    if value is None or value == "":
        return DockerConfig(problem=f"the secret has no {key} key")
    if not isinstance(value, str | bytes):
        return DockerConfig(problem=f"the secret's {key} value is not a string")
    if len(value) > _MAX_SECRET_BYTES * 2:
        return DockerConfig(problem=f"the secret's {key} value is too large")
    raw = _b64decode(value)
    if raw is None:
        return DockerConfig(problem=f"the secret's {key} value is not valid base64")
    return parser(raw)


def credentials_for(config: DockerConfig, image: str) -> Credentials | None:
    """Basic credentials of the first entry the kubelet would send for `image`, or None when no entry fits."""
    for entry in config.entries_for(image):
        if entry.has_basic:
            return entry_credentials(entry)
    return None


def entry_credentials(entry: AuthEntry) -> Credentials:
    """The probe's Credentials for one entry (it must have Basic credentials)."""
    return Credentials(
        username=entry.username or "", password=entry.password or "", fingerprint=entry.fingerprint() or ""
    )


def server_key(server: str) -> str:
    """The auths key to write for a registry server: Docker Hub gets the key the kubelet and docker expect."""
    key = registry_key(server)
    return "https://index.docker.io/v1/" if key == "docker.io" else key


def build_dockerconfigjson(server: str, username: str, password: str) -> dict[str, str]:
    """Secret `data` (base64 values) for a kubernetes.io/dockerconfigjson secret with one complete auths entry."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    doc = {"auths": {server_key(server): {"username": username, "password": password, "auth": auth}}}
    payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return {DOCKERCONFIGJSON_KEY: base64.b64encode(payload).decode("ascii")}
