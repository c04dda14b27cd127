"""One diagnosis of one failure: classify the message, inspect the pod, probe the registry, verify. Never raises.

Used by the watcher's pipeline (with the prober's cache) and, with `fresh=True`, by everything that diagnoses on
request (`/imagepull diagnose`, re-diagnose buttons, the follow-up after a fix, the CLI's `diagnose NS/POD`), which
must see the registry as it is now. It keeps no incident and writes nothing.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.diagnosis.classify import classify
from bot.diagnosis.verify import probe_target, verify
from bot.imageref import ImageRef
from bot.model import Classification, Credentials, Diagnosis, PodInspection, ProbeResult, PullFailure

log = logging.getLogger(__name__)


class InspectorPort(Protocol):
    async def inspect(self, namespace: str, pod: str, image: str) -> tuple[PodInspection, Credentials | None]: ...


class ProberPort(Protocol):
    async def probe(
        self, ref: ImageRef, credentials: Credentials | None, node_platform: str | None, *, fresh: bool = False
    ) -> ProbeResult: ...


class Diagnoser:
    """Diagnoses failures with the adapters it is given (either may be None: that evidence is then missing)."""

    def __init__(self, inspector: InspectorPort | None, prober: ProberPort | None, *, fresh: bool = False) -> None:
        self._inspector = inspector
        self._prober = prober
        self._fresh = fresh
        self.count = 0  # diagnoses made

    async def diagnose(self, failure: PullFailure, classification: Classification | None = None) -> Diagnosis:
        """Full diagnosis of one failure; an adapter that fails degrades the evidence, never the call."""
        classification = classification or classify(failure.message, failure.event_reason, failure.waiting_reason)
        inspection: PodInspection | None = None
        credentials: Credentials | None = None
        if self._inspector is not None:
            try:
                inspection, credentials = await self._inspector.inspect(failure.namespace, failure.pod, failure.image)
            except Exception as exc:
                log.warning("inspection of %s/%s failed: %s", failure.namespace, failure.pod, type(exc).__name__)
        probe: ProbeResult | None = None
        target = probe_target(failure, classification)
        if self._prober is not None and target is not None:
            node = inspection.node if inspection else None
            platform = f"{node.os or 'linux'}/{node.architecture}" if node and node.architecture else None
            try:
                probe = await self._prober.probe(target, credentials, platform, fresh=self._fresh)
            except Exception as exc:
                log.warning("registry probe of %s failed: %s", target, type(exc).__name__)
        self.count += 1
        return verify(failure, classification, inspection, probe)
