"""The pipeline writes a storm of pods as a few saves: quiet changes wait for the tick, posts never do."""

from __future__ import annotations

from pathlib import Path

from bot.incidents import BookSettings, IncidentBook
from bot.model import OutboxKind, PullFailure, WorkloadRef
from bot.pipeline import Pipeline
from bot.slack.render import SlackRenderer
from bot.store.migrate import upgrade
from bot.store.store import Store
from tests.store import queries


def failure(pod: str) -> PullFailure:
    image = "ghcr.io/acme/api:v9"
    return PullFailure(
        cluster="prod",
        namespace="shop",
        pod=pod,
        pod_uid=f"uid-{pod}",
        container="api",
        container_kind="container",
        image=image,
        waiting_reason="ErrImagePull",
        message=f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found',
        workload=WorkloadRef("Deployment", "api"),
    )


async def test_pods_joining_an_incident_are_saved_at_the_tick(tmp_path: Path) -> None:
    """The parent and diagnosis are stored at once; fifty more pods are one write at the next tick."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    store = await Store.open(url)
    try:
        book = IncidentBook(BookSettings(cluster="prod", default_channel="#alerts"), SlackRenderer())
        pipeline = Pipeline(book=book, store=store, inspector=None, prober=None)
        await pipeline.on_failure(failure("api-0"))
        (incident,) = await store.open_incidents("prod")
        assert incident.pods == ("api-0",)
        assert [m.kind for m in await queries.pending_outbox(store)] == [OutboxKind.POST_PARENT, OutboxKind.REPLY]
        saved = pipeline.stats.changes_saved
        for i in range(1, 51):
            await pipeline.on_failure(failure(f"api-{i}"))
        assert pipeline.stats.changes_saved == saved  # nothing written yet: no Slack write depends on it
        await pipeline.tick()
        assert pipeline.stats.changes_saved == saved + 1
        stored = await store.get_incident(incident.key)
        assert stored is not None and len(stored.pods) == 51 and stored.pods_seen == 51
        assert len(await queries.pending_outbox(store)) == 2
    finally:
        await store.close()
