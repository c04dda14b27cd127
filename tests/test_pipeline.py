"""The pipeline: a storm of pods is a few saves (quiet changes wait for the tick, posts never do); one diagnosis per
workload and cause while it is fresh; a save that fails is retried until the database answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.diagnoser import Diagnoser
from bot.incidents import BookSettings, IncidentBook
from bot.model import Cause, Incident, IncidentScope, OutboxKind, OutboxMessage, PullFailure, WorkloadRef
from bot.pipeline import Pipeline
from bot.slack.render import SlackRenderer
from bot.store.migrate import upgrade
from bot.store.store import Store
from tests.store import queries


def failure(pod: str, workload: str = "api") -> PullFailure:
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
        workload=WorkloadRef("Deployment", workload),
    )


async def test_pods_joining_an_incident_are_saved_at_the_tick(tmp_path: Path) -> None:
    """The parent and diagnosis are stored at once; fifty more pods are one write at the next tick."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    store = await Store.open(url)
    try:
        book = IncidentBook(BookSettings(cluster="prod", default_channel="#alerts"), SlackRenderer())
        pipeline = Pipeline(book=book, store=store, diagnoser=Diagnoser(None, None))
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


class CountingDiagnoser(Diagnoser):
    """The real diagnoser without adapters, counting and slowed down so that concurrent callers overlap."""

    def __init__(self) -> None:
        super().__init__(None, None)
        self.calls: list[str] = []

    async def diagnose(self, failure: PullFailure, classification: object = None) -> object:  # type: ignore[override]
        self.calls.append(failure.pod)
        await asyncio.sleep(0.05)
        return await super().diagnose(failure)


class FlakyStore:
    """The store port in front of a real store, failing its first `failures` saves as a dropped connection would."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.attempts = 0

    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionResetError("connection dropped")
        return await self.store.save_incident(incident, outbox)

    async def get_incident(self, key: str) -> Incident | None:
        return await self.store.get_incident(key)


async def _store(tmp_path: Path) -> Store:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    return await Store.open(url)


def _book() -> IncidentBook:
    return IncidentBook(BookSettings(cluster="prod", default_channel="#alerts"), SlackRenderer())


async def test_one_diagnosis_per_workload_while_fresh(tmp_path: Path) -> None:
    """Pods of one workload failing at once share one diagnosis; another workload gets its own; an expired entry
    is diagnosed again."""
    store = await _store(tmp_path)
    try:
        diagnoser = CountingDiagnoser()
        pipeline = Pipeline(book=_book(), store=store, diagnoser=diagnoser, diagnosis_ttl_s=60)
        await asyncio.gather(*(pipeline.on_failure(failure(f"api-{i}")) for i in range(20)))
        assert len(diagnoser.calls) == 1
        assert pipeline.stats.diagnosis_cache_hits == 19
        await pipeline.on_failure(failure("worker-0", workload="worker"))
        assert len(diagnoser.calls) == 2
        expired = Pipeline(book=_book(), store=store, diagnoser=diagnoser, diagnosis_ttl_s=0)
        await expired.on_failure(failure("api-0"))
        await expired.on_failure(failure("api-1"))
        assert len(diagnoser.calls) == 4
        (incident, *_) = await store.open_incidents("prod")
        assert incident.cause is Cause.TAG_NOT_FOUND
    finally:
        await store.close()


async def test_a_new_leader_reuses_the_stored_diagnoses_and_posts_nothing_again(tmp_path: Path) -> None:
    """After a takeover, the pods of a stored open incident reported again by the first list are neither diagnosed
    nor posted again; a workload the old leader never saw is diagnosed as usual."""
    store = await _store(tmp_path)
    try:
        first = Pipeline(book=_book(), store=store, diagnoser=CountingDiagnoser())
        for i in range(3):
            await first.on_failure(failure(f"api-{i}"))
        await first.tick()
        posted = len(await queries.pending_outbox(store))
        diagnoser = CountingDiagnoser()
        follower = Pipeline(book=_book(), store=store, diagnoser=diagnoser)
        await follower.restore(await store.open_incidents("prod"))
        for i in range(4):
            await follower.on_failure(failure(f"api-{i}"))
        await follower.on_failure(failure("worker-0", workload="worker"))
        await follower.tick()
        assert diagnoser.calls == ["worker-0"]
        assert follower.stats.diagnosis_cache_hits == 4
        outbox = await queries.pending_outbox(store)
        assert len(outbox) == posted + 2  # the new workload's parent and diagnosis only
        api = next(i for i in await store.open_incidents("prod") if i.workload.name == "api")
        assert len(api.pods) == 4
    finally:
        await store.close()


def rate_limited(pod: str, workload: str) -> PullFailure:
    image = f"docker.io/library/{workload}:1"
    return replace(
        failure(pod, workload),
        image=image,
        message=f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": pulling from host '
        "registry-1.docker.io failed with status code [manifests 1]: 429 Too Many Requests",
    )


async def test_a_new_leader_joins_known_pods_to_the_stored_registry_incident(tmp_path: Path) -> None:
    """Pods of the workloads a stored registry incident lists rejoin it after a takeover without a diagnosis and
    without a post; once the first sync is reconciled, a new failure of such a workload is diagnosed again."""
    store = await _store(tmp_path)
    now = [datetime(2026, 11, 30, 8, 0, tzinfo=UTC)]
    try:
        first = Pipeline(book=_book(), store=store, diagnoser=CountingDiagnoser(), clock=lambda: now[0])
        for w in ("a", "b", "c"):
            await first.on_failure(rate_limited(f"{w}-0", w))
        now[0] += timedelta(seconds=5)
        await first.tick()
        (registry,) = await store.open_incidents("prod")
        assert registry.scope is IncidentScope.REGISTRY and len(registry.affected) == 3
        posted = len(await queries.pending_outbox(store))
        diagnoser = CountingDiagnoser()
        follower = Pipeline(book=_book(), store=store, diagnoser=diagnoser, clock=lambda: now[0])
        await follower.restore(await store.open_incidents("prod"))
        for w in ("a", "b", "c"):
            await follower.on_failure(rate_limited(f"{w}-0", w))
            await follower.on_failure(rate_limited(f"{w}-1", w))
        await follower.tick()
        assert diagnoser.calls == []
        assert len(await queries.pending_outbox(store)) == posted
        (again,) = await store.open_incidents("prod")
        assert again.key == registry.key and len(again.pods) == 6
        await follower.reconcile()
        await follower.on_failure(rate_limited("a-2", "a"))
        assert diagnoser.calls == ["a-2"]
    finally:
        await store.close()


async def test_a_failed_save_is_retried_until_the_database_answers(tmp_path: Path) -> None:
    """Three dropped connections: the fourth attempt stores the incident and its Slack writes, once."""
    store = await _store(tmp_path)
    try:
        flaky = FlakyStore(store, failures=3)
        pipeline = Pipeline(book=_book(), store=flaky, diagnoser=Diagnoser(None, None))
        await pipeline.on_failure(failure("api-0"))
        assert flaky.attempts == 4
        (incident,) = await store.open_incidents("prod")
        assert [m.kind for m in await queries.pending_outbox(store)] == [OutboxKind.POST_PARENT, OutboxKind.REPLY]
        assert incident.pods == ("api-0",)
    finally:
        await store.close()


async def test_a_save_that_never_succeeds_raises_after_its_attempts(tmp_path: Path) -> None:
    """The pipeline gives up after `save_attempts` and raises: the watcher's caller sees it, nothing is half-saved."""
    store = await _store(tmp_path)
    try:
        flaky = FlakyStore(store, failures=100)
        pipeline = Pipeline(book=_book(), store=flaky, diagnoser=Diagnoser(None, None), save_attempts=3)
        with pytest.raises(ConnectionResetError):
            await pipeline.on_failure(failure("api-0"))
        assert flaky.attempts == 3
        assert await store.open_incidents("prod") == []
    finally:
        await store.close()
