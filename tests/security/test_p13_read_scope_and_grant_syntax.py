"""Point 13 (Low): who may read, and what a grant means.

Decided (docs/SECURITY.md): reads are open in the namespaces the bot watches, and a namespace it does not watch
(`kube.exclude_namespaces`, e.g. kube-system) needs a `read` grant; `scan` of all namespaces leaves unwatched ones
out. Grants are globs over the whole name: `prod*` covers `production`, `prod-*` does not; a grant that is not a
lowercase name, a glob or a known action is refused when the settings load.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.access import AccessPolicy
from bot.settings import AccessSettings
from tests.handlers.conftest import (
    ADMIN,
    STRANGER,
    World,
    command_body,
    eventually,
    failing_deployment,
    signed_headers,
)
from tests.security.conftest import rebuild, serve_app


async def test_unwatched_namespaces_need_a_read_grant(world: World) -> None:
    settings = world.flows.settings.model_copy(deep=True)
    settings.kube.exclude_namespaces = ["kube-system"]
    await rebuild(world, settings)
    (pod,) = failing_deployment(
        world.sim, name="coredns", namespace="kube-system", image="registry.invalid/secret-infra:v1"
    )
    name = pod["metadata"]["name"]
    async with serve_app(world) as endpoint:
        for text in (f"diagnose kube-system/{name}", "scan kube-system", "scan"):
            body = command_body(text, user=STRANGER)
            assert (await endpoint.post(body, signed_headers(body)))[0] == 200
        await eventually(lambda: len(world.slack.ephemerals) >= 3, timeout=10)
        answers = [m.text for m in world.slack.ephemerals]
        assert all("secret-infra" not in a for a in answers), answers
        assert sum("read" in a and "grant" in a for a in answers) == 2
        body = command_body("scan kube-system", user=ADMIN)  # "*:*" includes read
        assert (await endpoint.post(body, signed_headers(body)))[0] == 200
        await eventually(lambda: len(world.slack.ephemerals) >= 4, timeout=10)
        assert "secret-infra" in world.slack.ephemerals[-1].text
    refused = [r for r in await world.store.list_audit() if r.entry.action == "command.refused"]
    assert len(refused) == 2


def test_grant_globs_cover_the_whole_name() -> None:
    policy = AccessPolicy({"U1": ["prod*:delete_pod"], "U2": ["prod:delete_pod", "prod-*:delete_pod"]})
    assert policy.allows(["U1"], "c", "production", "delete_pod")
    assert not policy.allows(["U2"], "c", "production", "delete_pod")
    assert policy.allows(["U2"], "c", "prod-eu", "delete_pod") and policy.allows(["U2"], "c", "prod", "delete_pod")


@pytest.mark.parametrize("entry", ["Prod:delete_pod", "shop:delete-pod", "shop :*", "shop:delete_pods", "a/b/c:*"])
def test_a_grant_that_means_nothing_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError):
        AccessSettings(grants={"U1": [entry]})
