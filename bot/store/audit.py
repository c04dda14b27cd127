"""The audit chain's pure part: canonical hashing, chain verification and the last-line secret checks.

Each row's hash is `HMAC-SHA256(key, prev_hash + canonical_json(entry fields, id, ISO time))` with a key that is not
in the database (setting `audit.hmac_key`, a Kubernetes Secret); rows written before a key was configured keep the
unkeyed `sha256(prev_hash + ...)` (the signed head records from which row on the chain is keyed). The first row's
prev_hash is `GENESIS_HASH`. The chain head (`audit_head`: newest id and hash) is signed with the same key, so that
someone who can write to the database but does not hold the key can neither recompute the chain after editing a
row, nor delete the newest rows and move the head back, nor delete the head. Changing, deleting or reordering a row
breaks the chain at that row (or at the head, for the newest rows), which `verify_chain` reports. See
docs/SECURITY.md for the threat model.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.model import AuditEntry, AuditRecord
from bot.store.codec import iso_utc

GENESIS_HASH = "0" * 64

# Words that, as a whole word of a params key, mean the value is a credential.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "token",
        "tokens",
        "auth",
        "auths",
        "authorization",
        "dockerconfigjson",
        "dockercfg",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
        "cookie",
    }
)
# Compact spellings ("secretValue" -> "secretvalue") and word pairs that mean a credential.
_SECRET_COMPACT = frozenset(
    {"secretvalue", "secretdata", "secretkey", "accesskey", "apikey", "privatekey", "clientsecret", "bearertoken"}
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Values that are obviously credentials, whatever their key.
_SECRET_VALUE = re.compile(
    r"xox[abposre]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|\"auths\"\s*:"
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}",
)
# What error text may carry that must not reach a SQL row.
_SCRUB = (
    (re.compile(r"xox[abposre]-[A-Za-z0-9-]+"), "xox?-<redacted>"),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "xapp-<redacted>"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 <redacted>"),
    (
        re.compile(r"\b(password|passwd|token|secret|auth|authorization)(\s*[=:]\s*)[^\s,;&\"']+", re.IGNORECASE),
        r"\1\2<redacted>",
    ),
    (re.compile(r"(://[^/\s:@]+:)[^@/\s]+@"), r"\1<redacted>@"),
)
MAX_ERROR_CHARS = 500


def key_looks_secret(key: str) -> bool:
    """Tell whether a params key names a credential (password, token, auth, secret value, dockerconfigjson...)."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    compact = "".join(words)
    if any(c in compact for c in _SECRET_COMPACT) or "dockerconfigjson" in compact or "password" in compact:
        return True
    return any(a == "secret" and b in {"value", "data", "key", "text"} for a, b in itertools.pairwise(words))


def value_looks_secret(value: str) -> bool:
    """Tell whether a value is obviously a credential (a Slack token, a private key, a docker config, a bearer)."""
    return _SECRET_VALUE.search(value) is not None


def check_params(params: Mapping[str, str], what: str = "audit params") -> None:
    """Raise ValueError when a key or value looks like a secret; the message names the key, never the value."""
    for key, value in params.items():
        if key_looks_secret(key):
            raise ValueError(f"{what}: key {key!r} looks like a secret; secrets are never stored")
        if isinstance(value, str) and value_looks_secret(value):
            raise ValueError(f"{what}: the value of {key!r} looks like a credential; secrets are never stored")


def scrub_error(text: str) -> str:
    """Remove credential-looking parts from an error text and bound its length, before it is stored."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def canonical_json(entry: AuditEntry, record_id: int) -> str:
    """The stable text that is hashed for one row: sorted keys, no spaces, UTC time with microseconds."""
    body = {
        "id": record_id,
        "at": iso_utc(entry.at),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "target": entry.target,
        "params": dict(sorted(entry.params.items())),
        "result": entry.result,
        "proposal_id": entry.proposal_id,
        "incident_key": entry.incident_key,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, entry: AuditEntry, record_id: int, key: bytes | None = None) -> str:
    """The hash of one row given the previous row's hash: HMAC-SHA256 with `key`, plain SHA-256 without."""
    data = (prev_hash + canonical_json(entry, record_id)).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def make_record(entry: AuditEntry, record_id: int, prev_hash: str, key: bytes | None = None) -> AuditRecord:
    """Chain `entry` after a row whose hash is `prev_hash` (keyed when `key` is given)."""
    return AuditRecord(
        entry=entry, id=record_id, prev_hash=prev_hash, hash=chain_hash(prev_hash, entry, record_id, key)
    )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The `audit_head` row: newest id and hash, the first keyed row (None: unkeyed chain) and the signature."""

    last_id: int
    last_hash: str
    keyed_from: int | None = None
    signature: str | None = None


def head_signature(key: bytes, last_id: int, last_hash: str, keyed_from: int | None) -> str:
    """The HMAC-SHA256 signature of a chain head."""
    text = f"imagepull-doctor audit head v1\0{last_id}\0{last_hash}\0{keyed_from if keyed_from else 'none'}"
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def head_is_authentic(head: ChainHead, key: bytes) -> bool:
    """Whether a signed head's signature was made with `key` (constant-time comparison)."""
    if head.signature is None:
        return False
    expected = head_signature(key, head.last_id, head.last_hash, head.keyed_from)
    return hmac.compare_digest(expected, head.signature)


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of walking the chain: `first_bad_id` is the first row (or head id) that does not fit."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


class ChainVerifier:
    """Feed records in id order with `feed`; the first break is kept. Pure and incremental (rows come in pages).

    `key` and `keyed_from`: rows from that id on are checked as HMAC-SHA256 with the key (None: no keyed row).
    """

    def __init__(self, key: bytes | None = None, keyed_from: int | None = None) -> None:
        self.key = key
        self.keyed_from = keyed_from
        self.checked = 0
        self._last_id = 0
        self._last_hash = GENESIS_HASH
        self._bad: AuditVerification | None = None

    @property
    def broken(self) -> bool:
        """Whether a break was found already."""
        return self._bad is not None

    def feed(self, record: AuditRecord) -> None:
        """Check one record against the previous one."""
        if self._bad is not None:
            return
        self.checked += 1
        expected_id = self._last_id + 1
        if record.id != expected_id:
            what = "a missing row" if record.id > expected_id else "an out-of-order row"
            self._fail(record.id, f"id {record.id} follows id {self._last_id}: {what}")
        elif record.prev_hash != self._last_hash:
            self._fail(record.id, f"row {record.id} does not link to row {self._last_id} (deleted or reordered row)")
        elif not hmac.compare_digest(
            chain_hash(record.prev_hash, record.entry, record.id, self._key_for(record.id)), record.hash
        ):
            self._fail(record.id, f"row {record.id} does not match its hash (edited row)")
        else:
            self._last_id, self._last_hash = record.id, record.hash

    def _key_for(self, record_id: int) -> bytes | None:
        if self.keyed_from is None or record_id < self.keyed_from:
            return None
        return self.key if self.key is not None else b""

    def finish(self, head: tuple[int, str] | None) -> AuditVerification:
        """Compare the last row with the recorded chain head (None: no head recorded) and return the verdict."""
        if self._bad is not None:
            return self._bad
        head_id, head_hash = head if head is not None else (0, GENESIS_HASH)
        if head is not None and (head_id, head_hash) != (self._last_id, self._last_hash):
            bad_id = self._last_id + 1 if head_id > self._last_id else head_id
            return AuditVerification(
                ok=False,
                checked=self.checked,
                first_bad_id=bad_id,
                reason=f"chain ends at row {self._last_id} but its head records row {head_id} (newest rows deleted"
                " or head edited)",
            )
        if head is None and self._last_id != 0:
            return AuditVerification(
                ok=False, checked=self.checked, first_bad_id=self._last_id, reason="rows without a chain head"
            )
        return AuditVerification(ok=True, checked=self.checked, reason="ok")

    def _fail(self, record_id: int, reason: str) -> None:
        self._bad = AuditVerification(ok=False, checked=self.checked, first_bad_id=record_id, reason=reason)


UNSIGNED_HEAD = (
    "the chain head is not signed although audit.hmac_key is set: a chain written before the key (check it, then"
    " `imagepull-doctor audit adopt`), or one rewritten and downgraded to unkeyed hashes"
)


def check_head(head: ChainHead | None, key: bytes | None) -> AuditVerification | None:
    """The verdict on the head alone (None when it may be trusted as far as it goes), before any row is read.

    With a key every database has a head (the migration writes one): a missing head means it was deleted, and with
    it, most likely, the rows. A signed head must carry a valid signature; an unsigned head is a chain from before
    the key (its rows are then checked unkeyed, and any keyed row among them breaks it).
    """
    if head is None:
        return AuditVerification(False, 0, 1, "the chain head is missing (the log or its head was deleted)")
    if head.signature is None:
        if key is not None and head.last_id > 0:
            return AuditVerification(False, 0, head.last_id, UNSIGNED_HEAD)
        return None
    if key is None:
        return AuditVerification(
            False, 0, head.keyed_from, "the chain is keyed: set audit.hmac_key (IMAGEPULL_AUDIT__HMAC_KEY) to verify it"
        )
    if not head_is_authentic(head, key):
        return AuditVerification(
            False, 0, head.last_id, "the chain head's signature is wrong (head moved or rewritten without the key)"
        )
    return None


def verify_chain(
    records: Iterable[AuditRecord],
    head: tuple[int, str] | None,
    *,
    key: bytes | None = None,
    keyed_from: int | None = None,
) -> AuditVerification:
    """Verify a whole chain held in memory (see `ChainVerifier`)."""
    verifier = ChainVerifier(key, keyed_from)
    for record in records:
        verifier.feed(record)
        if verifier.broken:
            break
    return verifier.finish(head)
