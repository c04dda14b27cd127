"""Image references: parse, normalise and validate per the distribution reference grammar. Pure.

The grammar is the one of github.com/distribution/reference (regexp.go, normalize.go, reference.go):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name
    domain     := host [":" port]          host: DNS-like components, IPv4, or [IPv6]
    remote     := path-component ["/" path-component]*   (lowercase; separators ".", "_", "__", "-"+)
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex         (sha256: 64, sha384: 96, sha512: 128 lowercase hex)

Normalisation follows `ParseNormalizedNamed`: a first component is a registry host only when it holds
a "." or a ":" or is `localhost`; otherwise the reference is on Docker Hub (`docker.io`), and a
single-component Docker Hub name gets the `library/` prefix. Docker Hub aliases become `docker.io`.
An uppercase first component is not taken as a host (newer distribution/reference versions would,
kubelets vendoring older ones do not): `UPPER/case` is refused as "repository name must be lowercase",
which is what most clusters print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
REPOSITORY_MAX_LENGTH = 255
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REMOTE_RE = re.compile(_REMOTE_NAME, re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_LOWER_RE = re.compile(r"[a-f0-9]+", re.ASCII)


class InvalidImageReference(ValueError):
    """The text is not an image reference; `reason` says why in words a user understands."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid image reference {text!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference: registry host, repository path, optional tag and digest."""

    registry: str  # "docker.io", "ghcr.io", "127.0.0.1:5000"
    repository: str  # "library/nginx"
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag (default `latest`)."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """Registry and repository without tag or digest: `docker.io/library/nginx`."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag or not self.digest:
            out += f":{self.tag or DEFAULT_TAG}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def registry_key(host: str) -> str:
    """Normalise a registry host as written in a pull secret's `auths` or an image (scheme, path stripped)."""
    h = host.strip().lower()
    for prefix in ("https://", "http://"):
        if h.startswith(prefix):
            h = h[len(prefix) :]
    h = h.split("/", 1)[0]
    # A key may carry user info ("https://robot:TOKEN@ghcr.io"): never part of the host, and a credential that must
    # not travel with the host into messages, rows or logs.
    h = h.rpartition("@")[2]
    return DOCKER_HUB if h in _HUB_ALIASES else h


def _looks_like_host(first: str) -> bool:
    return first == "localhost" or "." in first or ":" in first


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidImageReference(text, "digest must be algorithm:hex, e.g. sha256: and 64 hex characters")
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_LENGTHS.get(algorithm)
    if expected is None:
        raise InvalidImageReference(text, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != expected:
        raise InvalidImageReference(text, f"{algorithm} digest must have {expected} hex characters, not {len(encoded)}")
    if not _HEX_LOWER_RE.fullmatch(encoded):
        raise InvalidImageReference(text, "digest hex must be lowercase")


def parse(text: str) -> ImageRef:
    """Parse and normalise `text` (`nginx` -> docker.io/library/nginx:latest); raise InvalidImageReference."""
    if not text:
        raise InvalidImageReference(text, "empty")
    if len(text.split()) != 1 or text != text.strip():  # any whitespace; str.split is the fast test
        raise InvalidImageReference(text, "contains whitespace")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidImageReference(text, "a 64-character hex string is an image id, not a repository name")
    name, at, digest = text.partition("@")
    if at and not digest:
        raise InvalidImageReference(text, "nothing after '@': a digest is missing")
    if at:
        _check_digest(text, digest)
    first, slash, remainder = name.partition("/")
    if slash and _looks_like_host(first):
        if not _DOMAIN_RE.fullmatch(first):
            raise InvalidImageReference(text, f"registry host {first!r} is not a valid host[:port]")
        registry, path = registry_key(first), remainder
    else:
        registry, path = DOCKER_HUB, name
    tag: str | None = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not tag:
            raise InvalidImageReference(text, "nothing after ':': a tag is missing")
        if not _TAG_RE.fullmatch(tag):
            raise InvalidImageReference(
                text, "tag must start with a letter, digit or '_' and hold at most 128 of [A-Za-z0-9_.-]"
            )
    if not path:
        raise InvalidImageReference(text, "repository name must have at least one component")
    if path != path.lower():
        raise InvalidImageReference(text, "repository name must be lowercase")
    if not _REMOTE_RE.fullmatch(path):
        raise InvalidImageReference(
            text,
            "repository path components must be lowercase letters and digits, separated by '/',"
            " with '.', '_', '__' or '-' only between them",
        )
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(path) > REPOSITORY_MAX_LENGTH:
        raise InvalidImageReference(text, f"repository name must not be more than {REPOSITORY_MAX_LENGTH} characters")
    if tag is None and not digest:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)


def try_parse(text: str) -> ImageRef | None:
    """Parse like `parse`, but give None for an invalid reference."""
    try:
        return parse(text)
    except InvalidImageReference:
        return None
