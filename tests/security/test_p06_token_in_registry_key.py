"""Point 6 (Low): a token inside a pull secret's registry key (`https://robot:TOKEN@host`) reached Slack and SQL.

The real bot (run_bot) diagnoses a pod whose pull secret's `auths` key carries user info with a token; the key is
read as its host only, and the token reaches no Slack call and no SQL row.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from sqlalchemy import MetaData, select

from testkit.kube import objects as k8s
from tests.e2e_world import bot_settings, running, settled, until, world_for

TOKEN = f"ghp{secrets.token_hex(12)}"


async def test_a_token_in_the_registry_key_reaches_no_slack_call_or_row(tmp_path: Path) -> None:
    async with world_for(tmp_path / "world") as world:
        world.registry.add_image("team/web", "v1")
        world.registry.require_auth("team/*", "robot", "right-password")
        image = f"{world.host}/team/web:v1"
        message = k8s.pull_error(
            image,
            f'failed to resolve reference "{image}": pulling from host {world.host} failed with status code'
            " [manifests v1]: 401 Unauthorized",
        )
        world.kubelet.workload("shop", "web", image, message)
        key = f"http://robot:{TOKEN}@{world.host}"
        world.cluster.put(
            k8s.docker_config_secret("regcred", "shop", {key: {"username": "robot", "password": "wrong"}})
        )
        world.cluster.put(k8s.service_account("default", "shop", image_pull_secrets=["regcred"]))
        async with running(bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")) as bot:

            async def posted() -> bool:
                return len(world.slack.messages) >= 2 and await settled(bot)

            await until(posted, timeout=20, what="the incident and its diagnosis posted")
            rows: list[str] = []
            async with bot.store.engine.connect() as conn:
                meta = MetaData()
                await conn.run_sync(meta.reflect)
                for table in meta.sorted_tables:
                    rows += [repr(tuple(r)) for r in (await conn.execute(select(table))).all()]
    posted_text = json.dumps([c.payload for c in world.slack.calls], default=str)
    assert world.host in posted_text  # the diagnosis speaks of the registry (and its secret entry)
    assert TOKEN not in posted_text
    assert not [r for r in rows if TOKEN in r]
