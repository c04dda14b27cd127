"""Image references: parse, normalise and validate per the distribution reference grammar. Pure.

Placeholder implementation of the public API; the diagnosis work (issue 3) makes it complete.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


class InvalidImageReference(ValueError):
    """The text is not an image reference; `reason` says why in words a user understands."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid image reference {text!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str  # "docker.io", "ghcr.io", "127.0.0.1:5000"
    repository: str  # "library/nginx"
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag (default `latest`)."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag or not self.digest:
            out += f":{self.tag or 'latest'}"
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
    return DOCKER_HUB if h in _HUB_ALIASES else h


def parse(text: str) -> ImageRef:
    """Parse and normalise `text` (`nginx` -> docker.io/library/nginx:latest); raise InvalidImageReference."""
    if not text or text != text.strip():
        raise InvalidImageReference(text, "empty or surrounded by whitespace")
    rest, _, digest = text.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = registry_key(first), remainder
    else:
        registry, path = DOCKER_HUB, rest
    tag: str | None = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
    if path != path.lower():
        raise InvalidImageReference(text, "repository name must be lowercase")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)
