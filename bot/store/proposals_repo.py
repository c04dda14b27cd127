"""The proposals table: mutating actions waiting for a second person's decision.

A proposal changes state only by compare-and-set (`transition_proposal`), so an approved action runs once even when
several replicas (or several approvers) race. Its audit rows are appended in the same transaction as the change.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from bot.model import ActionKind, AuditEntry, Proposal, ProposalStatus
from bot.store import audit as chain
from bot.store.audit_repo import AuditRepo
from bot.store.codec import str_dict_from_json
from bot.store.engine import Database, retry_disconnects, utcnow
from bot.store.models import PROPOSALS, as_utc, opt_utc

_ACTION_TARGET_KIND: dict[str, str] = {
    ActionKind.DELETE_POD.value: "pod",
    ActionKind.RECREATE_SECRET.value: "secret",
    ActionKind.LINK_SECRET.value: "serviceaccount",
}


class ProposalsRepo:
    """Proposals and their audit rows; every public method is one transaction."""

    def __init__(self, db: Database, audit: AuditRepo) -> None:
        self._db = db
        self._audit = audit

    @retry_disconnects
    async def create_proposal(self, proposal: Proposal, audit: AuditEntry | None = None) -> Proposal:
        """Store a new proposal (and, if given, its audit row in the same transaction); returns it with its id.

        Raises ValueError when params look like a secret. An `audit` entry without a proposal_id gets the new id.
        """
        chain.check_params(proposal.params, "proposal params")
        if audit is not None:
            chain.check_params(audit.params)
        values = proposal_values(proposal)
        async with self._db.write() as conn:
            new_id = (await conn.execute(insert(PROPOSALS).values(**values).returning(PROPOSALS.c.id))).scalar_one()
            if audit is not None:
                if audit.proposal_id is None:
                    audit = dataclasses.replace(audit, proposal_id=new_id)
                await self._audit.append_audit_in(conn, audit)
        return dataclasses.replace(proposal, id=new_id)

    @retry_disconnects
    async def get_proposal(self, proposal_id: int) -> Proposal | None:
        """The proposal with this id, or None."""
        row = await self._db.read_first(select(PROPOSALS).where(PROPOSALS.c.id == proposal_id))
        return None if row is None else proposal_from_row(row)

    @retry_disconnects
    async def pending_proposals(self) -> list[Proposal]:
        """Every proposal still waiting for a decision, oldest first."""
        stmt = select(PROPOSALS).where(PROPOSALS.c.status == ProposalStatus.PENDING.value).order_by(PROPOSALS.c.id)
        return [proposal_from_row(r) for r in await self._db.read_all(stmt)]

    @retry_disconnects
    async def transition_proposal(
        self,
        proposal_id: int,
        expected: ProposalStatus,
        new: ProposalStatus,
        *,
        decided_by: str | None = None,
        result: str | None = None,
        now: datetime | None = None,
        audit: AuditEntry | None = None,
        params_update: dict[str, str] | None = None,
    ) -> Proposal | None:
        """Atomically move a proposal from `expected` to `new`; None if its status was not `expected`.

        `params_update` is merged into the proposal's params in the same transaction (e.g. the approver's Kubernetes
        identity, which the executor holds the approver to).

        This compare-and-set (`UPDATE ... WHERE id = ? AND status = ?`) is what lets exactly one approver, on any
        replica, win. Leaving PENDING records `decided_at`; `decided_by` and `result` are kept unless given.
        `audit`, if given, is appended in the same transaction (and only if the transition happened).
        """
        if audit is not None:
            chain.check_params(audit.params)
        now = now or utcnow()
        values: dict[str, Any] = {"status": new.value}
        if decided_by is not None:
            values["decided_by"] = decided_by
        if result is not None:
            values["result"] = chain.scrub_error(result)
        if expected == ProposalStatus.PENDING and new != ProposalStatus.PENDING:
            values["decided_at"] = now
        stmt = (
            update(PROPOSALS)
            .where(PROPOSALS.c.id == proposal_id, PROPOSALS.c.status == expected.value)
            .values(**values)
        )
        async with self._db.write() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return None
            row = (await conn.execute(select(PROPOSALS).where(PROPOSALS.c.id == proposal_id))).mappings().one()
            if params_update:
                merged = {**str_dict_from_json(row["params"]), **params_update}
                chain.check_params(merged, "proposal params")
                await conn.execute(update(PROPOSALS).where(PROPOSALS.c.id == proposal_id).values(params=merged))
                row = (await conn.execute(select(PROPOSALS).where(PROPOSALS.c.id == proposal_id))).mappings().one()
            if audit is not None:
                if audit.proposal_id is None:
                    audit = dataclasses.replace(audit, proposal_id=proposal_id)
                await self._audit.append_audit_in(conn, audit)
        return proposal_from_row(row)

    @retry_disconnects
    async def expire_proposals(
        self, now: datetime | None = None, *, audit: bool = False, approved_before: datetime | None = None
    ) -> int:
        """Mark pending proposals whose expiry has passed as expired; returns how many. With `approved_before`,
        approved proposals (and forwarded requests) that nobody claimed and that were decided before it expire too.

        With `audit=True` each expiry also appends a "proposal.expired" row by actor "bot" in the same transaction.
        """
        now = now or utcnow()
        pending = and_(PROPOSALS.c.status == ProposalStatus.PENDING.value, PROPOSALS.c.expires_at <= now)
        stale = (
            and_(
                PROPOSALS.c.status == ProposalStatus.APPROVED.value,
                PROPOSALS.c.result.is_(None),
                PROPOSALS.c.decided_at <= approved_before,
            )
            if approved_before is not None
            else false()
        )
        due = select(PROPOSALS).where(or_(pending, stale))
        async with self._db.write() as conn:
            rows = (await conn.execute(due.order_by(PROPOSALS.c.id).with_for_update())).mappings().all()
            if not rows:
                return 0
            ids = [r["id"] for r in rows]
            result = await conn.execute(
                update(PROPOSALS)
                .where(PROPOSALS.c.id.in_(ids), or_(pending, stale))
                .values(status=ProposalStatus.EXPIRED.value, decided_at=now)
            )
            if audit:
                for row in rows:
                    proposal = proposal_from_row(row)
                    await self._audit.append_audit_in(
                        conn,
                        AuditEntry(
                            actor_id="bot",
                            actor_name="imagepull-doctor",
                            action="proposal.expired",
                            target=proposal_target(proposal),
                            params={"action": proposal.action.value},
                            result="expired"
                            if row["status"] == ProposalStatus.PENDING.value
                            else "expired: approved but not run in time",
                            at=now,
                            proposal_id=proposal.id,
                            incident_key=proposal.incident_key,
                        ),
                    )
            return int(result.rowcount)


def proposal_target(proposal: Proposal) -> str:
    """The audit target of a proposal: "cluster/namespace/kind/name"."""
    kind = _ACTION_TARGET_KIND.get(proposal.action.value, proposal.action.value)
    return f"{proposal.cluster}/{proposal.namespace}/{kind}/{proposal.target}"


# ---- row <-> dataclass ----


def proposal_values(p: Proposal) -> dict[str, Any]:
    """The proposals row of a proposal (without its id)."""
    return {
        "action": p.action.value,
        "cluster": p.cluster,
        "namespace": p.namespace,
        "target": p.target,
        "params": dict(p.params),
        "requested_by": p.requested_by,
        "requested_by_name": p.requested_by_name,
        "created_at": as_utc(p.created_at),
        "expires_at": as_utc(p.expires_at),
        "incident_key": p.incident_key,
        "status": p.status.value,
        "decided_by": p.decided_by,
        "decided_at": opt_utc(p.decided_at),
        "result": p.result,
    }


def proposal_from_row(row: RowMapping) -> Proposal:
    """The proposal of a proposals row."""
    return Proposal(
        action=ActionKind(row["action"]),
        cluster=row["cluster"],
        namespace=row["namespace"],
        target=row["target"],
        params=str_dict_from_json(row["params"]),
        requested_by=row["requested_by"],
        requested_by_name=row["requested_by_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        incident_key=row["incident_key"],
        status=ProposalStatus(row["status"]),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        result=row["result"],
        id=row["id"],
    )


__all__ = ["ProposalsRepo", "proposal_from_row", "proposal_target", "proposal_values"]
