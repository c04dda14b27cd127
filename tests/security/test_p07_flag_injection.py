"""Point 7 (Low): a pull secret named `--kubeconfig=evil.conf` became a flag in the copy-paste command.

The API server does not validate the names in a pod's `imagePullSecrets`; the bot diagnosed such a pod through the
real Slack app and offered `kubectl -n shop create secret docker-registry --kubeconfig=evil.conf ...`. Now names
are checked as the API checks object names (DNS-1123) before they are used, and the secret name comes after `--`.
"""

from __future__ import annotations

import json
import shlex

from testkit.kube import objects as o
from tests.handlers.conftest import SlackEndpoint, World, command_body, eventually, failing_deployment, signed_headers

HOSTILE = "--kubeconfig=evil.conf"


async def test_a_hostile_secret_name_never_becomes_a_kubectl_flag(world: World, endpoint: SlackEndpoint) -> None:
    image = f"{world.registry_host}/team/web:v9"
    error = (
        f'failed to resolve reference "{image}": pulling from host {world.registry_host} failed with status code'
        " [manifests v9]: 401 Unauthorized"
    )
    (pod,) = failing_deployment(world.sim, image=image)
    pod["spec"]["imagePullSecrets"] = [{"name": HOSTILE}]
    world.sim.put(o.set_waiting(pod, "web", "ErrImagePull", o.pull_error(image, error)))
    world.registry.add_image("team/web", "v9")
    world.registry.require_auth("team/*", "robot", "s3cret-x")
    body = command_body(f"diagnose shop/{pod['metadata']['name']}")
    assert (await endpoint.post(body, signed_headers(body)))[0] == 200
    (answer,) = await eventually(lambda: world.slack.ephemerals, timeout=10)
    text = answer.text + "\n" + "\n".join(b.get("text", {}).get("text", "") for b in answer.blocks or [])
    commands = [line.strip("`") for line in text.splitlines() if "kubectl" in line]
    assert any("create secret docker-registry" in c for c in commands), json.dumps(answer.blocks)[:2000]
    for command in commands:
        for part in command.replace("&amp;", "&").split("|"):
            argv = shlex.split(part.replace("&gt;", ">").replace("&lt;", "<")) if part.strip() else []
            assert not any(arg.startswith("--kubeconfig") for arg in argv), command
