"""RegistryProber against SimRegistry: Bearer tokens, Docker Hub's 429, 403, 5xx, hangs, caching and coalescing."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.imageref import parse
from bot.model import Credentials, ProbeOutcome
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import RegistryProber, api_host, credential_fingerprint
from bot.settings import RegistrySettings
from testkit.oci.simregistry import SimRegistry

SECRET = "s3cret-pass-word"


def _prober(sim: SimRegistry, budget_s: float = 2.0, **kw: object) -> RegistryProber:
    return RegistryProber(
        RegistrySettings(
            insecure_registries=[sim.host], probe_budget_s=budget_s, allow_networks=list(LOOPBACK_NETWORKS), **kw
        )
    )  # type: ignore[arg-type]


async def test_rate_limit_headers_are_parsed(sim: SimRegistry) -> None:
    """A 429 with Docker Hub's headers gives RATE_LIMITED, the limit and remaining count, and the body's code."""
    sim.set_fault("rate_limit")
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.RATE_LIMITED
    assert result.http_status == 429
    assert result.ratelimit_limit == "100;w=21600"
    assert result.ratelimit_remaining == "0;w=21600"
    assert "TOOMANYREQUESTS" in result.detail


async def test_rate_limit_headers_on_success(sim: SimRegistry) -> None:
    """Remaining pulls are read from a successful HEAD too."""
    sim.ratelimit = (100, 76)
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.2"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.OK
    assert result.ratelimit_remaining == "76;w=21600"


@pytest.mark.parametrize(
    ("fault", "status", "outcome"),
    [
        ("forbidden", 403, ProbeOutcome.FORBIDDEN),
        ("server_error", 503, ProbeOutcome.SERVER_ERROR),
        ("server_error", 500, ProbeOutcome.SERVER_ERROR),
    ],
)
async def test_faults_are_classified(sim: SimRegistry, fault: str, status: int, outcome: ProbeOutcome) -> None:
    """403 and 5xx on the manifest become FORBIDDEN and SERVER_ERROR with the status."""
    sim.set_fault(fault, status=status)
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == outcome
    assert result.http_status == status


async def test_ping_server_error_stops_early(sim: SimRegistry) -> None:
    """A 502 on /v2/ is a SERVER_ERROR and no manifest request follows."""
    sim.set_fault("server_error", on="ping", status=502)
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.SERVER_ERROR
    assert result.http_status == 502
    assert sim.count("/manifests/") == 0


async def test_hang_is_bounded_by_the_budget(sim: SimRegistry) -> None:
    """A registry that never answers gives TIMEOUT within budget + 0.5 s."""
    sim.set_fault("hang", on="all")
    prober = _prober(sim, budget_s=0.5)
    started = time.monotonic()
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    elapsed = time.monotonic() - started
    assert result.outcome == ProbeOutcome.TIMEOUT
    assert elapsed < 0.5 + 0.5
    assert "0.5 s" in result.detail


async def test_partial_result_kept_when_tags_hang(sim: SimRegistry) -> None:
    """The manifest answer is kept when the tags listing runs out of budget."""
    sim.set_fault("hang", on="tags")
    prober = _prober(sim, budget_s=0.4)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:9.9.9"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.MANIFEST_UNKNOWN
    assert "tags timed out" in result.detail
    assert result.elapsed_ms < 900


async def test_repo_missing_on_manifest_is_name_unknown(sim: SimRegistry) -> None:
    """A registry that answers NAME_UNKNOWN on the manifest itself needs no tags request."""
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/ghost:1"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.NAME_UNKNOWN
    assert sim.count("/tags/list") == 0


async def test_tags_pagination_is_followed(sim: SimRegistry) -> None:
    """Link rel=next pages are followed when the registry caps the page size."""
    sim.tags_page_size = 7
    for i in range(30):
        sim.add_image("team/many", f"1.0.{i}")
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/many:1.0.99"), None, None)
    finally:
        await prober.close()
    assert result.tags_sample_size == 30
    assert sim.count("/tags/list") == 5
    assert result.nearest_tags[0] == "1.0.29"


class TestBearer:
    """Docker-Hub-like token auth: realm, service, scope; anonymous tokens without access."""

    async def test_anonymous_token_refused_with_401(self, sim: SimRegistry) -> None:
        """An anonymous token for a private repository gets 401 on the manifest."""
        sim.require_auth("private/*", "robot", SECRET, mode="bearer")
        prober = _prober(sim)
        try:
            result = await prober.probe(parse(f"{sim.host}/private/app:1.0"), None, None)
        finally:
            await prober.close()
        assert result.outcome == ProbeOutcome.UNAUTHORIZED
        assert result.used_credentials is False
        assert sim.count("/token?") == 1
        assert "scope=repository:private/app:pull" in next(p for _, p in sim.requests if p.startswith("/token"))

    async def test_anonymous_token_refused_with_403(self, sim: SimRegistry) -> None:
        """Registries that answer 403 to an anonymous token give FORBIDDEN."""
        sim.require_auth("private/*", "robot", SECRET, mode="bearer", anonymous_status=403)
        prober = _prober(sim)
        try:
            result = await prober.probe(parse(f"{sim.host}/private/app:1.0"), None, None)
        finally:
            await prober.close()
        assert result.outcome == ProbeOutcome.FORBIDDEN

    async def test_right_credentials_get_a_token(self, sim: SimRegistry, caplog: pytest.LogCaptureFixture) -> None:
        """Credentials go to the token realm as Basic; the manifest is then found; nothing secret is logged."""
        caplog.set_level(logging.DEBUG)
        sim.require_auth("private/*", "robot", SECRET, mode="bearer")
        creds = Credentials("robot", SECRET, fingerprint="abc123")
        prober = _prober(sim)
        try:
            result = await prober.probe(parse(f"{sim.host}/private/app:1.0"), creds, None)
        finally:
            await prober.close()
        assert result.outcome == ProbeOutcome.OK
        assert result.used_credentials is True
        assert SECRET not in caplog.text
        assert SECRET not in repr(result)

    async def test_wrong_credentials_refused_at_the_token_endpoint(self, sim: SimRegistry) -> None:
        """Wrong credentials: the token endpoint's 401 is the answer, said as such."""
        sim.require_auth("private/*", "robot", SECRET, mode="bearer")
        prober = _prober(sim)
        try:
            result = await prober.probe(parse(f"{sim.host}/private/app:1.0"), Credentials("robot", "nope-nope"), None)
        finally:
            await prober.close()
        assert result.outcome == ProbeOutcome.UNAUTHORIZED
        assert result.detail.startswith("token endpoint answered 401")
        assert result.used_credentials is True

    async def test_public_repo_with_bearer_everywhere(self, sim: SimRegistry) -> None:
        """With a Bearer challenge on /v2/ (as Docker Hub), a public repository is read with an anonymous token."""
        sim.require_auth("private/*", "robot", SECRET, mode="bearer")
        prober = _prober(sim)
        try:
            result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, "linux/arm64")
        finally:
            await prober.close()
        assert result.outcome == ProbeOutcome.OK
        assert result.platforms == ("linux/amd64", "linux/arm64")


async def test_token_in_error_detail_is_scrubbed(sim: SimRegistry) -> None:
    """A registry that echoes the password in an error never gets it into the detail."""
    sim.require_auth("private/*", "robot", SECRET, mode="basic")
    sim.set_fault("server_error", status=500)
    prober = _prober(sim)
    try:
        result = await prober.probe(parse(f"{sim.host}/private/app:1.0"), Credentials("robot", SECRET), None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.SERVER_ERROR
    assert SECRET not in result.detail


class TestCache:
    """Results are cached per (registry, repository, reference, credentials) and concurrent probes coalesce."""

    async def test_cache_hit(self, sim: SimRegistry) -> None:
        """A second probe within the TTL sends no request and says it was cached."""
        prober = _prober(sim)
        try:
            first = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
            before = len(sim.requests)
            second = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
            after = len(sim.requests)
            other_creds = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), Credentials("u", "p", "fp1"), None)
            fresh = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None, fresh=True)
        finally:
            await prober.close()
        assert first.cached is False
        assert second.cached is True
        assert second.outcome == first.outcome
        assert after == before
        assert other_creds.cached is False
        assert fresh.cached is False

    async def test_storm_is_coalesced(self, sim: SimRegistry) -> None:
        """Fifty identical probes at once make one conversation with the registry."""
        prober = _prober(sim)
        try:
            results = await asyncio.gather(
                *(prober.probe(parse(f"{sim.host}/team/app:v1.2.3"), None, None) for _ in range(50))
            )
        finally:
            await prober.close()
        assert {r.outcome for r in results} == {ProbeOutcome.MANIFEST_UNKNOWN}
        assert sum(1 for _, path in sim.requests if path == "/v2/") == 1
        assert sim.count("/manifests/") == 2  # one HEAD, one GET for the error code
        assert sim.count("/tags/list") == 1
        assert sum(1 for r in results if not r.cached) == 1

    async def test_ttl_zero_disables_the_cache(self, sim: SimRegistry) -> None:
        """With cache_ttl_s=0 every sequential probe talks to the registry."""
        prober = _prober(sim, cache_ttl_s=0)
        try:
            await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
            await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
        finally:
            await prober.close()
        assert sim.count("/manifests/", "HEAD") == 2


@pytest.mark.parametrize("settings", [{"probe_enabled": False}, {"no_probe_registries": ["HOST"]}])
async def test_probing_switched_off(sim: SimRegistry, settings: dict[str, object]) -> None:
    """Probing off globally or for one registry gives SKIPPED without a request."""
    values = {k: ([sim.host] if v == ["HOST"] else v) for k, v in settings.items()}
    prober = _prober(sim, **values)
    try:
        result = await prober.probe(parse(f"{sim.host}/team/app:1.2.3"), None, None)
    finally:
        await prober.close()
    assert result.outcome == ProbeOutcome.SKIPPED
    assert sim.requests == []


def test_docker_hub_api_host_and_fingerprints() -> None:
    """docker.io is served by registry-1.docker.io; fingerprints are short, stable and hide the password."""
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("ghcr.io") == "ghcr.io"
    assert credential_fingerprint(None) == ""
    assert credential_fingerprint(Credentials("u", "p", fingerprint="given")) == "given"
    computed = credential_fingerprint(Credentials("u", SECRET))
    assert len(computed) == 12
    assert computed == credential_fingerprint(Credentials("u", SECRET))
    assert computed != credential_fingerprint(Credentials("u", SECRET + "x"))


async def test_docker_hub_mode_token_outcome_and_near_names() -> None:
    """Hub-like registry: an anonymous token is issued (recorded apart), the manifest gets 401 insufficient_scope,
    and the near name `library/nginx` of `library/ngnix` is found by asking for its tags."""
    hub = SimRegistry(hub=True)
    await hub.start()
    hub.add_image("library/nginx", "1.25", ["linux/amd64", "linux/arm64"])
    prober = _prober(hub)
    try:
        result = await prober.probe(parse(f"{hub.host}/library/ngnix:1.25"), None, None)
    finally:
        await prober.close()
        await hub.stop()
    assert result.outcome == ProbeOutcome.UNAUTHORIZED
    assert result.token_status == 200 and not result.token_with_credentials
    assert result.auth_error == "insufficient_scope"
    assert result.nearest_repositories == ("library/nginx",)


async def test_docker_hub_mode_counts_get_not_head() -> None:
    """Out of pulls: GET of a manifest gets 429 with ratelimit headers while HEAD still answers 200."""
    hub = SimRegistry(hub=True)
    await hub.start()
    hub.add_image("library/nginx", "1.25")
    hub.hub_pulls_left = 0
    prober = _prober(hub)
    try:
        ok = await prober.probe(parse(f"{hub.host}/library/nginx:1.25"), None, None)
    finally:
        await prober.close()
        await hub.stop()
    assert ok.outcome == ProbeOutcome.OK  # the probe HEADs a single-platform manifest: no pull counted
    assert ok.ratelimit_remaining == "0;w=21600"
    assert hub.count("/manifests/", "GET") == 0
