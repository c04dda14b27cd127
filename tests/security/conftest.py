"""Fixtures of the security tests: the handlers' world (simulated cluster and registry, SQLite, fake Slack, the real
Bolt app over signed HTTP) re-used as is, and helpers to give a test its own grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.access import AccessPolicy
from tests.handlers.conftest import World, endpoint, sqlite_template, world

__all__ = ["endpoint", "grant", "sqlite_template", "world"]


def grant(w: World, grants: Mapping[str, Sequence[str]], *, two_person: bool = False) -> None:
    """Replace the grants of the world's bot (the policy every flow reads through the shared context)."""
    policy = AccessPolicy(grants, two_person_rule=two_person)
    w.flows.policy = policy
    w.flows.ctx.policy = policy
