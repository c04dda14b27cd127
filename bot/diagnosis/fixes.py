"""Copy-paste fix commands per cause (placeholder until issue 3 lands). Pure."""

from __future__ import annotations

import shlex

from bot.model import Cause, Facts, FixCommand, PodInspection, PullFailure


def fix_commands(
    cause: Cause, failure: PullFailure, inspection: PodInspection | None, facts: Facts
) -> tuple[FixCommand, ...]:
    """Commands filled with the real names, shell-quoted."""
    ns, pod = shlex.quote(failure.namespace), shlex.quote(failure.pod)
    return (FixCommand("Look at the pod and its events", f"kubectl -n {ns} describe pod {pod}"),)
