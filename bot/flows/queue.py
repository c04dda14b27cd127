"""SQL the Store does not offer (yet): listing and claiming approved proposals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from bot.model import ProposalStatus
from bot.store.models import PROPOSALS
from bot.store.store import Store

RUNNING_PREFIX = "running: "


class ProposalQueue:
    """Approved proposals of one cluster and their claim (a compare-and-set on `result`), on the store's engine."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    async def approved(self, cluster: str) -> list[int]:
        """Ids of approved proposals of `cluster` nobody has claimed, oldest first."""
        stmt = (
            select(PROPOSALS.c.id)
            .where(
                PROPOSALS.c.cluster == cluster,
                PROPOSALS.c.status == ProposalStatus.APPROVED.value,
                PROPOSALS.c.result.is_(None),
            )
            .order_by(PROPOSALS.c.id)
            .limit(100)
        )
        async with self._engine.connect() as conn:
            return [int(r[0]) for r in (await conn.execute(stmt)).all()]

    async def claim(self, proposal_id: int, worker: str, *, decided_after: datetime | None = None) -> bool:
        """Claim an approved proposal for `worker`; True for exactly one caller. An approval older than
        `decided_after` is never claimed (it expires instead)."""
        conditions = [
            PROPOSALS.c.id == proposal_id,
            PROPOSALS.c.status == ProposalStatus.APPROVED.value,
            PROPOSALS.c.result.is_(None),
        ]
        if decided_after is not None:
            conditions.append(PROPOSALS.c.decided_at > decided_after)
        stmt = update(PROPOSALS).where(*conditions).values(result=f"{RUNNING_PREFIX}{worker}"[:200])
        async with self._engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount == 1)

    async def stale_runs(self, cluster: str, decided_before: datetime) -> list[int]:
        """Ids of claimed proposals of `cluster` still running although decided before `decided_before`."""
        stmt = select(PROPOSALS.c.id).where(
            PROPOSALS.c.cluster == cluster,
            PROPOSALS.c.status == ProposalStatus.APPROVED.value,
            PROPOSALS.c.result.like(f"{RUNNING_PREFIX}%"),
            PROPOSALS.c.decided_at < decided_before,
        )
        async with self._engine.connect() as conn:
            return [int(r[0]) for r in (await conn.execute(stmt)).all()]
