"""Message classifier (placeholder until issue 3 lands): message -> Classification. Pure, never raises."""

from __future__ import annotations

from bot.model import Cause, Classification, Facts


def classify(message: str, event_reason: str | None = None, waiting_reason: str | None = None) -> Classification:
    """Name the cause of one pull-failure message; unknown text gives Cause.OTHER with the raw text."""
    if waiting_reason == "InvalidImageName":
        return Classification(Cause.INVALID_IMAGE_NAME, Facts(), "The image reference is not valid.", message)
    if waiting_reason == "ErrImageNeverPull":
        return Classification(Cause.NEVER_PULL, Facts(), "The image is absent and pull policy is Never.", message)
    return Classification(Cause.OTHER, Facts(), "The pull failed for a reason not in the catalogue.", message)
