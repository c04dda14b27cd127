"""RegistryProber against real Debian `docker-registry` processes (CNCF distribution 2.8)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from bot.imageref import parse
from bot.model import Credentials, ProbeOutcome
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import RegistryProber
from bot.settings import RegistrySettings
from tests.registry.conftest import PASSWORD, USERNAME, RealRegistry

pytestmark = pytest.mark.integration


def _prober(registry: RealRegistry, **kw: object) -> RegistryProber:
    insecure = [registry.host] if registry.scheme == "http" else []
    return RegistryProber(
        RegistrySettings(insecure_registries=insecure, probe_budget_s=3.0, allow_networks=list(LOOPBACK_NETWORKS), **kw)
    )  # type: ignore[arg-type]


async def test_existing_tag_is_ok(plain_registry: RealRegistry) -> None:
    """A pushed tag is found with HEAD."""
    prober = _prober(plain_registry)
    try:
        result = await prober.probe(parse(f"{plain_registry.host}/team/app:1.2.3"), None, "linux/amd64")
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.OK
    assert result.http_status == 200
    assert result.used_credentials is False


async def test_missing_tag_suggests_nearest(plain_registry: RealRegistry) -> None:
    """A missing `v`-prefixed tag is MANIFEST_UNKNOWN, with the unprefixed tag first among the suggestions."""
    prober = _prober(plain_registry)
    try:
        result = await prober.probe(parse(f"{plain_registry.host}/team/app:v1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.MANIFEST_UNKNOWN
    assert result.http_status == 404
    assert "MANIFEST_UNKNOWN" in result.detail
    assert result.tags_sample_size == 4
    assert result.nearest_tags[:2] == ("1.2.3", "1.2.2")


async def test_missing_repository_is_name_unknown(plain_registry: RealRegistry) -> None:
    """distribution says MANIFEST_UNKNOWN on the manifest; the tags list's NAME_UNKNOWN tells the repo is missing."""
    prober = _prober(plain_registry)
    try:
        result = await prober.probe(parse(f"{plain_registry.host}/team/nothing-here:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.NAME_UNKNOWN
    assert "NAME_UNKNOWN" in result.detail


async def test_index_platforms_are_listed(plain_registry: RealRegistry) -> None:
    """An index with only linux/arm64 reports that platform; a two-platform index reports both."""
    prober = _prober(plain_registry)
    try:
        arm = await prober.probe(parse(f"{plain_registry.host}/team/armonly:1.0"), None, "linux/amd64")
        multi = await prober.probe(parse(f"{plain_registry.host}/team/multi:2.0"), None, "linux/amd64")
    finally:
        await prober.close()
    assert arm.outcome == ProbeOutcome.OK
    assert arm.platforms == ("linux/arm64",)
    assert set(multi.platforms) == {"linux/amd64", "linux/arm64"}


async def test_digest_reference(plain_registry: RealRegistry) -> None:
    """An unknown digest is MANIFEST_UNKNOWN and no tag listing is attempted for it."""
    prober = _prober(plain_registry)
    digest = "sha256:" + "0" * 64
    try:
        result = await prober.probe(parse(f"{plain_registry.host}/team/app@{digest}"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.MANIFEST_UNKNOWN
    assert result.reference == digest
    assert "MANIFEST_UNKNOWN" in result.detail
    assert result.tags_sample_size == 0


async def test_auth_without_credentials_is_401(auth_registry: RealRegistry) -> None:
    """htpasswd registry, anonymous: 401 without credentials used."""
    prober = _prober(auth_registry)
    try:
        result = await prober.probe(parse(f"{auth_registry.host}/private/app:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.UNAUTHORIZED
    assert result.http_status == 401
    assert result.used_credentials is False


async def test_auth_with_wrong_credentials_is_401(
    auth_registry: RealRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong credentials: 401 with credentials used; the password shows in no log, detail or repr."""
    caplog.set_level(logging.DEBUG)
    wrong = Credentials(USERNAME, "wrong-password-123", fingerprint="fp-wrong")
    prober = _prober(auth_registry)
    try:
        result = await prober.probe(parse(f"{auth_registry.host}/private/app:1.0"), wrong, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.UNAUTHORIZED
    assert result.used_credentials is True
    for text in (caplog.text, result.detail, repr(result), repr(wrong), repr(prober)):
        assert "wrong-password-123" not in text


async def test_auth_with_right_credentials_is_ok(auth_registry: RealRegistry, caplog: pytest.LogCaptureFixture) -> None:
    """Right credentials: 200, and neither the password nor the Basic header is logged."""
    caplog.set_level(logging.DEBUG)
    right = Credentials(USERNAME, PASSWORD, fingerprint="fp-right")
    prober = _prober(auth_registry)
    try:
        result = await prober.probe(parse(f"{auth_registry.host}/private/app:1.0"), right, None)
        missing = await prober.probe(parse(f"{auth_registry.host}/private/app:9.9"), right, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.OK
    assert result.used_credentials is True
    assert missing.outcome == ProbeOutcome.MANIFEST_UNKNOWN
    assert missing.tags_sample_size == 1
    assert PASSWORD not in caplog.text
    assert "fp-right" in caplog.text


async def test_tls_unknown_authority(tls_registry: RealRegistry) -> None:
    """A self-signed certificate without ca_file is a TLS outcome."""
    prober = _prober(tls_registry)
    try:
        result = await prober.probe(parse(f"{tls_registry.host}/team/app:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.TLS
    assert "certificate" in result.detail


async def test_tls_trusted_with_ca_file(tls_registry: RealRegistry) -> None:
    """The same registry is OK when its certificate is trusted through settings.ca_file."""
    prober = _prober(tls_registry, ca_file=tls_registry.ca_file)
    try:
        result = await prober.probe(parse(f"{tls_registry.host}/team/app:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.OK


async def test_https_to_plain_registry_is_tls(plain_registry: RealRegistry) -> None:
    """A plain-HTTP registry not listed as insecure fails the TLS handshake (https by default)."""
    prober = RegistryProber(RegistrySettings(probe_budget_s=3.0, allow_networks=list(LOOPBACK_NETWORKS)))
    try:
        result = await prober.probe(parse(f"{plain_registry.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.TLS


async def test_dns_failure() -> None:
    """A `.invalid` host never resolves."""
    prober = RegistryProber(RegistrySettings(probe_budget_s=3.0, allow_networks=list(LOOPBACK_NETWORKS)))
    try:
        result = await prober.probe(parse("registry.example.invalid/team/app:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.DNS


async def test_connection_refused() -> None:
    """A closed loopback port refuses the connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"127.0.0.1:{port}"
    prober = RegistryProber(
        RegistrySettings(insecure_registries=[host], probe_budget_s=3.0, allow_networks=list(LOOPBACK_NETWORKS))
    )
    started = time.monotonic()
    try:
        result = await prober.probe(parse(f"{host}/team/app:1.0"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.REFUSED
    assert time.monotonic() - started < 3.0
