"""Verifier (placeholder until issue 4 lands): fold cluster and registry evidence into a Diagnosis. Pure."""

from __future__ import annotations

from bot import imageref
from bot.diagnosis.fixes import fix_commands
from bot.model import Classification, Diagnosis, PodInspection, ProbeResult, PullFailure


def probe_target(failure: PullFailure, classification: Classification) -> imageref.ImageRef | None:
    """What to probe in the registry, or None when probing cannot help."""
    try:
        return imageref.parse(failure.image)
    except imageref.InvalidImageReference:
        return None


def verify(
    failure: PullFailure,
    classification: Classification,
    inspection: PodInspection | None,
    probe: ProbeResult | None,
) -> Diagnosis:
    """The final diagnosis with its confidence, evidence and fixes."""
    cause = classification.cause
    return Diagnosis(
        cause=cause,
        summary=classification.sentence,
        confidence=0.6,
        facts=classification.facts,
        fixes=fix_commands(cause, failure, inspection, classification.facts),
        raw_message=classification.raw,
        message_cause=cause,
    )
