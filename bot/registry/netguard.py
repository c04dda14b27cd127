"""Where a registry probe may connect: server-side request forgery (SSRF) defences.

A probe connects to hosts that users and registries choose: the image's registry (anyone who can create a pod or
type into the recreate-secret form picks it), the `Location` of a redirect and the `realm` of a Bearer challenge
(the registry picks those). Without a guard the bot is a proxy into the cluster network: cloud metadata endpoints
(169.254.169.254), the API server, databases on private addresses. Following OWASP's SSRF prevention cheat sheet
(https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html):

- every address a probe connects to is checked after name resolution (so a public name that resolves to a private
  address is refused too, also on a later re-resolution: the check runs inside the connector's resolver);
- loopback, link-local, private, shared (100.64/10), unique-local, multicast, reserved and unspecified addresses
  are denied unless `RegistrySettings.allow_networks` lists a range holding them, or the host (or host:port) is in
  `RegistrySettings.allow_registries`;
- redirects are followed only to the same scheme, host and port (never https -> http, never another host): the
  probe reads manifests and tag lists, never blobs, so it never needs a cross-host redirect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # what tests and the demo allow


class BlockedAddress(OSError):
    """A connection to an address the settings do not allow (the message names the host, never a response)."""


def _normal(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkPolicy:
    """Which addresses and hosts a probe may reach: public addresses, plus the allowed ranges and hosts."""

    def __init__(self, allow_networks: Iterable[str] = (), allow_hosts: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.hosts = frozenset(h.strip().lower().rstrip(".") for h in allow_hosts if h.strip())

    def host_allowed(self, host: str, port: int | None) -> bool:
        """Whether the host (or host:port) is allowed whatever its address."""
        name = host.strip("[]").lower().rstrip(".")
        if name in self.hosts:
            return True
        if port is None:
            return False
        bracketed = f"[{name}]" if ":" in name else name
        return f"{bracketed}:{port}" in self.hosts

    def address_allowed(self, address: str) -> bool:
        """Whether a connection to this IP address may be made."""
        try:
            ip = _normal(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return False
        if any(ip in network for network in self.networks if network.version == ip.version):
            return True
        return ip.is_global and not ip.is_multicast

    def check_url(self, url: URL) -> None:
        """Refuse a URL whose host is an IP literal the policy denies (names are checked when they resolve)."""
        host = url.host or ""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: the guarded resolver checks what it resolves to
        if not self.host_allowed(host, url.port) and not self.address_allowed(host.strip("[]")):
            raise BlockedAddress(f"{host} is in a denied network range")

    def resolver(self) -> GuardedResolver:
        """An aiohttp resolver that drops denied addresses (and fails when none is left)."""
        return GuardedResolver(self)


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, keeping only the addresses the policy allows."""

    def __init__(self, policy: NetworkPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner: AbstractResolver = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        """The addresses of `host` the policy allows; BlockedAddress when there are none."""
        results: list[ResolveResult] = await self.inner.resolve(host, port, family)
        if self.policy.host_allowed(host, port):
            return results
        allowed = [r for r in results if self.policy.address_allowed(str(r["host"]))]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to denied network ranges")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()


def same_origin_redirect(current: URL, location: str) -> URL | None:
    """The target of a redirect if it stays on the same scheme, host and port; None otherwise."""
    target = current.join(URL(location))
    if target.scheme != current.scheme or target.host != current.host or target.port != current.port:
        return None
    return target
