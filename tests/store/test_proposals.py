"""Proposals: create and read, compare-and-set transitions (one winner among concurrent approvers), expiry."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from bot.model import ProposalStatus
from bot.store.store import Store
from tests.store.conftest import OpenStore
from tests.store.factories import T0, audit_entry, proposal


async def test_create_and_get_round_trip(store: Store) -> None:
    """A created proposal gets an id and reads back equal."""
    created = await store.create_proposal(proposal())
    assert created.id is not None
    assert await store.get_proposal(created.id) == created
    assert await store.get_proposal(created.id + 100) is None
    assert await store.pending_proposals() == [created]


async def test_transition_is_a_compare_and_set(store: Store) -> None:
    """A transition from the wrong status does nothing and returns None."""
    created = await store.create_proposal(proposal())
    assert created.id is not None
    approved = await store.transition_proposal(
        created.id, ProposalStatus.PENDING, ProposalStatus.APPROVED, decided_by="U999", now=T0 + timedelta(minutes=1)
    )
    assert approved is not None and approved.status is ProposalStatus.APPROVED
    assert approved.decided_by == "U999" and approved.decided_at == T0 + timedelta(minutes=1)
    assert await store.transition_proposal(created.id, ProposalStatus.PENDING, ProposalStatus.REJECTED) is None
    done = await store.transition_proposal(created.id, ProposalStatus.APPROVED, ProposalStatus.SUCCEEDED, result="ok")
    assert done is not None and done.result == "ok" and done.decided_by == "U999"
    assert done.decided_at == approved.decided_at
    assert await store.pending_proposals() == []


async def test_two_concurrent_approvers_exactly_one_wins(open_store: OpenStore) -> None:
    """Approvers on two replicas race for the same proposal: exactly one transition succeeds, audited once."""
    first, second = await open_store(), await open_store()
    ids = []
    for _ in range(10):
        created = await first.create_proposal(proposal())
        assert created.id is not None
        ids.append(created.id)

    async def approve(store: Store, who: str, proposal_id: int) -> bool:
        won = await store.transition_proposal(
            proposal_id,
            ProposalStatus.PENDING,
            ProposalStatus.APPROVED,
            decided_by=who,
            audit=audit_entry(actor_id=who, action="proposal.approved"),
        )
        return won is not None

    for proposal_id in ids:
        results = await asyncio.gather(approve(first, "U1", proposal_id), approve(second, "U2", proposal_id))
        assert sorted(results) == [False, True]
    audit = await first.list_audit(limit=100)
    assert sorted(r.entry.proposal_id for r in audit if r.entry.proposal_id is not None) == ids
    assert (await first.verify_audit()).ok


async def test_transition_with_audit_is_one_transaction(store: Store) -> None:
    """The audit row of a transition carries the proposal id, and a lost race appends nothing."""
    created = await store.create_proposal(proposal(), audit=audit_entry(action="proposal.created"))
    assert created.id is not None
    approved = await store.transition_proposal(
        created.id, ProposalStatus.PENDING, ProposalStatus.APPROVED, audit=audit_entry(1, action="proposal.approved")
    )
    assert approved is not None
    lost = await store.transition_proposal(
        created.id, ProposalStatus.PENDING, ProposalStatus.REJECTED, audit=audit_entry(2, action="proposal.rejected")
    )
    assert lost is None
    rows = await store.list_audit()
    assert [(r.entry.action, r.entry.proposal_id) for r in rows] == [
        ("proposal.created", created.id),
        ("proposal.approved", created.id),
    ]


async def test_a_secret_in_the_audit_aborts_the_transition(store: Store) -> None:
    """A transition whose audit entry carries a secret is refused before anything changes."""
    created = await store.create_proposal(proposal())
    assert created.id is not None
    with pytest.raises(ValueError, match="password"):
        await store.transition_proposal(
            created.id,
            ProposalStatus.PENDING,
            ProposalStatus.APPROVED,
            audit=audit_entry(params={"password": "hunter2"}),
        )
    again = await store.get_proposal(created.id)
    assert again is not None and again.status is ProposalStatus.PENDING


async def test_secret_params_are_refused_on_create(store: Store) -> None:
    """Proposal params never hold a secret value."""
    with pytest.raises(ValueError, match="dockerconfigjson"):
        await store.create_proposal(proposal(params={".dockerconfigjson": "{}"}))
    assert await store.pending_proposals() == []


async def test_expire_proposals(store: Store) -> None:
    """Only pending proposals past their expiry expire, each once; with audit=True each is audited."""
    old = await store.create_proposal(proposal(expires_at=T0 + timedelta(minutes=5)))
    fresh = await store.create_proposal(proposal(expires_at=T0 + timedelta(hours=5)))
    decided = await store.create_proposal(proposal(expires_at=T0, status=ProposalStatus.REJECTED))
    assert old.id is not None and fresh.id is not None and decided.id is not None
    now = T0 + timedelta(minutes=10)
    assert await store.expire_proposals(now, audit=True) == 1
    assert await store.expire_proposals(now, audit=True) == 0
    expired = await store.get_proposal(old.id)
    assert expired == dataclasses.replace(old, status=ProposalStatus.EXPIRED, decided_at=now)
    assert [p.id for p in await store.pending_proposals()] == [fresh.id]
    assert [r.entry.action for r in await store.list_audit()] == ["proposal.expired"]
    assert (await store.list_audit())[0].entry.target == "c1/shop/pod/api-7d9f-abcde"
