"""Pull-secret contents: parse `.dockerconfigjson` / `.dockercfg` data, match registries, fingerprint credentials.

Pure: no I/O and no client library. It follows the kubelet's reading of pull secrets
(pkg/credentialprovider/secrets and config.go): a secret counts only when its type is
`kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`, an object with `auths`) or the legacy
`kubernetes.io/dockercfg` (key `.dockercfg`, the auths map at the top level); an entry's `auth` is
base64 "user:password" and wins over `username`/`password`. Problems are described in fixed words:
a problem text never contains any byte of the secret.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

    def __repr__(self) -> str:
        return f"AuthEntry(registry={self.registry!r}, username=<redacted>)"

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

    def entry_for(self, host: str) -> AuthEntry | None:
        """The entry whose key matches the image's registry host, preferring an exact key over a wildcard."""
        want = registry_key(host)
        exact = [e for e in self.entries if e.registry == want]
        if exact:
            return exact[0]
        for e in self.entries:
            if host_matches(e.registry, want):
                return e
        return None


def fingerprint(host: str, username: str, password: str) -> str:
    """sha256 of the normalised host, user and password (NUL-separated); the first 12 hex digits, safe to log."""
    material = "\0".join((registry_key(host), username, password)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()[:12]


def host_matches(key: str, host: str) -> bool:
    """Whether an auths key (normalised) matches an image's registry host: exact host:port, or a `*` glob per label.

    Docker Hub aliases are equal after normalisation; like the kubelet, a glob such as `*.example.com`
    matches one label per `*` and the ports must be equal.
    """
    key, host = registry_key(key), registry_key(host)
    if key == host:
        return True
    if "*" not in key:
        return False
    key_host, _, key_port = key.partition(":")
    img_host, _, img_port = host.partition(":")
    if key_port != img_port:
        return False
    key_labels, img_labels = key_host.split("."), img_host.split(".")
    if len(key_labels) != len(img_labels):
        return False
    return all(fnmatch.fnmatchcase(i, k) for k, i in zip(key_labels, img_labels, strict=True))


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
    return AuthEntry(registry=registry_key(key), username=username or None, password=password, identity_token=token)


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


def credentials_for(config: DockerConfig, host: str) -> Credentials | None:
    """Basic credentials for the image's registry host from a parsed secret, or None when no entry fits."""
    entry = config.entry_for(host)
    if entry is None or not entry.has_basic:
        return None
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
