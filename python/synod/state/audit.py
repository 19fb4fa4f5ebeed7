"""The audit trail: an append-only table in the store, each row holding the hash of the one
before, so an edit, a removal or a reordering of any row shows when the chain is recomputed.

Who appends: the API (every authenticated call: who, what, from where), the consensus path
(every ledger transaction applied), and node code (key events, node starts and stops) through
`AuditLog.append`. A row never holds a secret: callers pass ids and outcomes, not payloads.

`verify` recomputes the chain and names the first row that does not match. Removing rows from
the *end* leaves a shorter valid chain; an operator who keeps the last `head_hash` elsewhere
(it is printed by `synod audit verify`) detects that too.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synod.state.db import PostgresDatabase, SqliteDatabase, migrate

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first row."""
MAX_DETAIL = 4096
"""Bytes of JSON detail kept per row: callers describe, they do not dump."""


AUDIT_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        # The ledger's own migrations make the same table in a ledger store; a store that is
        # no ledger (the API's beside a replica, a signer node's) gets it here.
        """
        CREATE TABLE IF NOT EXISTS audit_log (
            seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """,
    ),
]


def prepare_audit(db: SqliteDatabase | PostgresDatabase) -> None:
    """The audit table in `db`, when it is not there yet."""
    migrate(db, AUDIT_MIGRATIONS, "audit_schema_version")


class AuditAction(enum.StrEnum):
    API_CALL = "api_call"
    LEDGER_TX = "ledger_tx"
    TOKEN = "token"  # an API token created or revoked
    KEY_EVENT = "key_event"  # DKG, refresh, reshare
    NODE_START = "node_start"
    NODE_STOP = "node_stop"
    ADHOC_SIGN = "adhoc_sign"  # a development member signed an operator's ad-hoc message


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: int  # Unix milliseconds
    actor: str
    action: str
    detail: str  # canonical JSON
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "detail": json.loads(self.detail),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verification:
    rows: int
    head_hash: str
    first_bad: int | None = None  # seq of the first row that does not match
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def row_hash(seq: int, at: int, actor: str, action: str, detail: str, prev_hash: str) -> str:
    payload = json.dumps([seq, at, actor, action, detail, prev_hash], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _detail(detail: Mapping[str, Any]) -> str:
    text = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > MAX_DETAIL:
        raise ValueError(f"audit detail of {len(text)} bytes exceeds {MAX_DETAIL}")
    return text


class AuditLog:
    """The audit table of one store. Appends join the caller's database transaction when there
    is one, so an action and its audit row commit together or not at all."""

    _COLUMNS = "seq, at, actor, action, detail, prev_hash, hash"

    def __init__(
        self,
        db: SqliteDatabase | PostgresDatabase,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.clock = clock

    def append(
        self, actor: str, action: AuditAction | str, detail: Mapping[str, Any] | None = None
    ) -> AuditRow:
        action = AuditAction(action)
        text = _detail(detail or {})
        at = int(self.clock() * 1000)
        with self.db.transaction():
            last = self.db.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq, prev = (int(last[0][0]) + 1, last[0][1]) if last else (1, GENESIS_HASH)
            digest = row_hash(seq, at, actor, action.value, text, prev)
            self.db.execute(
                f"INSERT INTO audit_log ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action.value, text, prev, digest),
            )
        return AuditRow(seq, at, actor, action.value, text, prev, digest)

    def tail(self, limit: int = 50) -> list[AuditRow]:
        """The newest `limit` rows, newest first."""
        rows = self.db.query(
            f"SELECT {self._COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [_row(r) for r in rows]

    def verify(self, page: int = 1000) -> Verification:
        """Recompute the chain from the first row; stop at the first one that does not match."""
        prev, expected, count = GENESIS_HASH, 1, 0
        while True:
            rows = self.db.query(
                f"SELECT {self._COLUMNS} FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?",
                (expected, page),
            )
            if not rows:
                return Verification(count, prev)
            for raw in rows:
                r = _row(raw)
                problem = ""
                if r.seq != expected:
                    problem = f"row {expected} is missing (next row is {r.seq})"
                elif r.prev_hash != prev:
                    problem = "prev_hash does not match the previous row's hash"
                elif row_hash(r.seq, r.at, r.actor, r.action, r.detail, r.prev_hash) != r.hash:
                    problem = "hash does not match the row's content"
                if problem:
                    return Verification(count, prev, expected, problem)
                prev, expected, count = r.hash, expected + 1, count + 1


def _row(r: tuple[Any, ...]) -> AuditRow:
    return AuditRow(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6])
