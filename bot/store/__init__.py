"""SQL persistence: incidents, Slack threads, the outbox, proposals and the hash-chained audit log.

`Store` (bot.store.store) is the API; `upgrade` (bot.store.migrate) brings a database to the newest schema.
"""

from bot.store.audit import AuditVerification
from bot.store.migrate import migrate, upgrade
from bot.store.store import Store

__all__ = ["AuditVerification", "Store", "migrate", "upgrade"]
