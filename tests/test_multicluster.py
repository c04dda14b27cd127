"""Several clusters: one bot per cluster, each on its own simulated API server, sharing one database and one Slack.

Incidents are keyed by cluster, each bot keeps (and reconciles) only its own cluster's incidents, and each cluster's
Lease is its own (`imagepull-doctor-<cluster>`). The outbox is cluster-agnostic by design: every replica of every
cluster sends any due row (rows are claimed, so each is sent once, in order per incident). That is right because the
clusters share one Slack app (one token); clusters posting to different Slack workspaces need separate databases.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bot.composition import Bot
from bot.model import IncidentStatus
from bot.settings import Settings
from tests.e2e_world import (
    World,
    bot_settings,
    holder,
    incident_of,
    not_found,
    outbox_idle,
    parents_per_incident,
    running,
    until,
    world_for,
)

ROUTES = {"east/*": "#east-alerts", "west/*": "#west-alerts"}


def _same_failure(world: World, image: str) -> None:
    world.kubelet.workload("shop", "api", image, not_found(image))


async def test_two_clusters_share_database_and_slack_but_keep_incidents_apart(shared_db: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        east = await stack.enter_async_context(world_for(tmp_path / "east"))
        west = await stack.enter_async_context(world_for(tmp_path / "west", slack=east.slack))
        # the same workload and image fail in both clusters (the image lives in east's registry)
        image = f"{east.host}/shop/api:v1.5.0"
        _same_failure(east, image)
        _same_failure(west, image)

        def settings(world: World, cluster: str) -> Settings:
            s = bot_settings(world, shared_db, cluster=cluster, ha=True, identity=f"{cluster}-bot", routes=ROUTES)
            s.registry.insecure_registries = [east.host]
            return s

        east_settings, west_settings = settings(east, "east"), settings(west, "west")
        e_cm, w_cm = running(east_settings), running(west_settings)
        e_bot = await e_cm.__aenter__()
        w_bot = await w_cm.__aenter__()
        e_running = w_running = True
        try:

            async def both_posted() -> bool:
                e, w = await incident_of(e_bot, "api"), await incident_of(w_bot, "api")
                ready = e is not None and w is not None and bool(e.thread_ts and w.thread_ts)
                return ready and await outbox_idle(e_bot.store)

            await until(both_posted, what="each cluster's incident posted")
            # each cluster elects on its own Lease
            assert holder(east, "east") == "east-bot" and holder(west, "west") == "west-bot"
            assert holder(east, "west") is None and holder(west, "east") is None

            e_inc, w_inc = await incident_of(e_bot, "api"), await incident_of(w_bot, "api")
            assert e_inc is not None and w_inc is not None
            assert (e_inc.cluster, w_inc.cluster) == ("east", "west") and e_inc.key != w_inc.key
            ids = (east.slack.channel_id("#east-alerts"), east.slack.channel_id("#west-alerts"))
            assert (e_inc.channel, w_inc.channel) == ids  # routes resolved to channel IDs at start-up
            assert [i.key for i in e_bot.book.open_incidents()] == [e_inc.key]
            assert [i.key for i in w_bot.book.open_incidents()] == [w_inc.key]
            per_incident = parents_per_incident(east)
            assert per_incident == {e_inc.key: 1, w_inc.key: 1}
            assert [t.parent.ts for t in east.slack.threads("#east-alerts")] == [e_inc.thread_ts]
            assert [t.parent.ts for t in east.slack.threads("#west-alerts")] == [w_inc.thread_ts]

            # east recovers: only east's thread is resolved
            east.kubelet.start("shop", "api")

            async def east_resolved() -> bool:
                inc = await incident_of(e_bot, "api")
                return inc is not None and inc.status is IncidentStatus.RESOLVED and await outbox_idle(e_bot.store)

            await until(east_resolved, what="east resolved")
            west_now = await incident_of(w_bot, "api")
            assert west_now is not None and west_now.status is IncidentStatus.OPEN
            [west_thread] = east.slack.threads("#west-alerts")
            assert len(west_thread.replies) == 1 and "resolved" not in west_thread.parent.text.lower()

            # east fails again and its bot goes away; west's bot restarts: it must not reconcile east's incident
            # (west's cluster has no such pods) nor touch its thread
            east.kubelet.fail("shop", "api")

            async def east_reopened() -> bool:
                inc = await incident_of(e_bot, "api")
                return inc is not None and inc.status is IncidentStatus.OPEN and await outbox_idle(e_bot.store)

            await until(east_reopened, what="east reopened")
            e_running = False
            await e_cm.__aexit__(None, None, None)
            w_running = False
            await w_cm.__aexit__(None, None, None)
        finally:
            if e_running:
                await e_cm.__aexit__(None, None, None)
            if w_running:
                await w_cm.__aexit__(None, None, None)

        async with running(west_settings) as w2:
            await until(lambda: _leads(w2), what="west bot leads again")
            await until(lambda: outbox_idle(w2.store), what="outbox idle")
            assert [i.key for i in w2.book.open_incidents()] == [w_inc.key]
            east_after = await w2.store.get_incident(e_inc.key)
            assert east_after is not None and east_after.status is IncidentStatus.OPEN
        assert parents_per_incident(east) == {e_inc.key: 1, w_inc.key: 1}


async def _leads(bot: Bot) -> bool:
    return bot.is_leader.is_set() and bot.watcher is not None and bot.watcher.synced.is_set()
