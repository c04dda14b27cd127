"""A log handler for the leak tests: every record at DEBUG, formatted with its exception, before any redaction."""

from __future__ import annotations

import logging


class LogCapture(logging.Handler):
    """Every record, formatted, into `lines` (added to the root logger first, it sees records unredacted)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
