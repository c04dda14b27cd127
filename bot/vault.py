"""A short-lived, in-memory vault for registry credentials typed into a Slack modal, keyed by proposal id.

Credentials never reach SQL, logs or Slack: the proposal stores only the server, the credential fingerprint and the
identity of the process that holds them (`holder`). They stay in this process's memory until the proposal is
executed (`take` removes them) or its time runs out (`purge`). A restart loses them on purpose: the proposal then
fails with "credentials no longer available; type them again", it never runs with anything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HeldCredentials:
    """Registry credentials for one proposal; `repr` never shows the values."""

    server: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    fingerprint: str = ""

    def __repr__(self) -> str:
        return f"HeldCredentials(server={self.server!r}, fingerprint={self.fingerprint!r})"


class CredentialVault:
    """Proposal id -> credentials, each kept at most `ttl_s` seconds."""

    def __init__(self, ttl_s: float = 1800.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: dict[int, tuple[float, HeldCredentials]] = {}

    def __repr__(self) -> str:
        return f"CredentialVault({len(self._items)} held)"

    def put(self, proposal_id: int, credentials: HeldCredentials, ttl_s: float | None = None) -> None:
        """Hold `credentials` for `proposal_id` (replacing any held before)."""
        self.purge()
        self._items[proposal_id] = (self._clock() + (self._ttl_s if ttl_s is None else ttl_s), credentials)

    def holds(self, proposal_id: int) -> bool:
        """Whether credentials for `proposal_id` are still held."""
        self.purge()
        return proposal_id in self._items

    def take(self, proposal_id: int) -> HeldCredentials | None:
        """Remove and return the credentials for `proposal_id` (None when gone or expired)."""
        self.purge()
        item = self._items.pop(proposal_id, None)
        return None if item is None else item[1]

    def drop(self, proposal_id: int) -> None:
        """Forget the credentials for `proposal_id` (rejected or expired proposal)."""
        self._items.pop(proposal_id, None)

    def purge(self) -> int:
        """Forget every expired entry; return how many."""
        now = self._clock()
        gone = [k for k, (until, _) in self._items.items() if until <= now]
        for k in gone:
            del self._items[k]
        return len(gone)

    def __len__(self) -> int:
        return len(self._items)
