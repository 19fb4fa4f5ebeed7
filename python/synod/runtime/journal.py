"""A node's local, durable journal of write-back transactions made while consensus is paused.

Entries keep their order; `resume` applies them in that order and removes each only
after the ledger accepted (or provably refused) it, so a crash at any point replays
the rest and the ledger's idempotency absorbs what was already applied.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from synod.state.transactions import Tx, parse_tx


class Journal:
    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS journal "
            "(seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)"
        )

    def append(self, tx: Tx) -> None:
        tx.validate()  # a malformed transaction is refused now, never stored to fail later
        self._db.execute("INSERT INTO journal (body) VALUES (?)", (tx.canonical().decode(),))

    def pending(self) -> list[tuple[int, Tx]]:
        rows = self._db.execute("SELECT seq, body FROM journal ORDER BY seq").fetchall()
        return [(seq, parse_tx(body)) for seq, body in rows]

    def remove(self, seq: int) -> None:
        self._db.execute("DELETE FROM journal WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM journal").fetchone()[0])

    def close(self) -> None:
        self._db.close()
