"""Fault knobs of the simulated API server: errors, throttling, latency, dropped watches, expired history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _PlannedFailure:
    remaining: int
    status: int
    path_prefix: str | None
    retry_after: int | None
    method: str | None


@dataclass(slots=True)
class Faults:
    """Mutable fault settings read by the server on every request; tests flip them while clients run."""

    latency_s: float = 0.0  # added before answering every request (watch streams: before the first line)
    _planned: list[_PlannedFailure] = field(default_factory=list)
    _drop: Callable[[], int] | None = None
    _expire: Callable[[], None] | None = None
    injected: int = 0  # how many requests were answered with an injected error

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        path_prefix: str | None = None,
        retry_after: int | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next `count` requests (whose path starts with `path_prefix`, if given) with `status`.

        A 429 carries `Retry-After` (1 second unless `retry_after` says otherwise).
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        self._planned.append(_PlannedFailure(count, status, path_prefix, retry_after, method))

    def take(self, method: str, path: str) -> tuple[int, int | None] | None:
        """Consume a planned failure matching this request: (status, retry_after) or None."""
        for plan in self._planned:
            if plan.remaining <= 0:
                continue
            if plan.path_prefix and not path.startswith(plan.path_prefix):
                continue
            if plan.method and plan.method.upper() != method.upper():
                continue
            plan.remaining -= 1
            self.injected += 1
            self._planned = [p for p in self._planned if p.remaining > 0]
            return plan.status, plan.retry_after
        return None

    def clear(self) -> None:
        """Cancel planned failures and latency."""
        self._planned.clear()
        self.latency_s = 0.0

    def drop_watches(self) -> int:
        """End every open watch stream now (clients see the stream close); returns how many."""
        return self._drop() if self._drop else 0

    def expire_history(self) -> None:
        """Forget the event history: any watch or continue token from before now gets 410 Gone."""
        if self._expire:
            self._expire()
