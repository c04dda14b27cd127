"""Diagnoses on request: the pipeline with the registry cache skipped and a store that never saves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.imageref import ImageRef
from bot.incidents import BookSettings, IncidentBook
from bot.kube.inspect import Inspector
from bot.model import Credentials, Diagnosis, Incident, OutboxMessage, ProbeResult, PullFailure
from bot.pipeline import Pipeline
from bot.registry.probe import RegistryProber
from bot.settings import Settings
from bot.slack.render import SlackRenderer


class Diagnoser(Protocol):
    async def diagnose(self, failure: PullFailure) -> Diagnosis: ...


class FreshProber:
    """The prober with its cache skipped: a re-diagnosis must see the registry as it is now."""

    def __init__(self, prober: RegistryProber) -> None:
        self._prober = prober

    async def probe(self, ref: ImageRef, credentials: Credentials | None, node_platform: str | None) -> ProbeResult:
        return await self._prober.probe(ref, credentials, node_platform, fresh=True)


class NoStore:
    """The pipeline's store port for one-off diagnoses, which never save."""

    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        return incident

    async def get_incident(self, key: str) -> Incident | None:
        return None


def fresh_pipeline(
    settings: Settings, inspector: Inspector, prober: RegistryProber, book: IncidentBook | None = None
) -> Pipeline:
    """A pipeline that probes the registry afresh and saves nothing (`book` defaults to a new one)."""
    book = book or IncidentBook(
        BookSettings(cluster=settings.kube.cluster_name, default_channel=settings.slack.default_channel),
        SlackRenderer(),
    )
    return Pipeline(book=book, store=NoStore(), inspector=inspector, prober=FreshProber(prober))
