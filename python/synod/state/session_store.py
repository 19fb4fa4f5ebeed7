"""A node's local session store: encrypted secrets and one-time nonces, on SQLite.

Rules it enforces (seed 000 §7, §12):

- a nonce is written (encrypted) and committed to disk *before* its commitment
  may leave the node — `put_nonce` returns only after the commit;
- a nonce is consumed at most once — `take_nonce` marks it used and erases the
  ciphertext in one durable transaction before returning it, so a crash after the
  take loses the nonce instead of offering it again; with `secure_delete` and a WAL
  checkpoint, the erased ciphertext is then in neither file on disk. The checkpoint
  runs in `settle`, which the node calls as soon as the share made from the nonce is
  with its transport (so it is not on the share's way out), and when the store opens
  (a crash in between);
- every take is logged, so tests can prove that no nonce was ever used twice;
- a CGGMP presignature is kept the same way: moved in (the object is used up), taken out
  once by id, its ciphertext erased in the same transaction, before any partial signature
  made from it can leave the node. This store is the only way back from bytes to a
  presignature, so copies of a presignature cannot exist.

Secrets (key shares, nonces) are sealed with ChaCha20-Poly1305 under a key
derived from the node's storage key; the row id is the associated data, so a
ciphertext cannot be moved to another row.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from synod.crypto import ecdsa

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    id TEXT PRIMARY KEY,
    session_id BLOB NOT NULL,
    sealed BLOB,
    state TEXT NOT NULL CHECK (state IN ('fresh', 'used', 'discarded')),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonce_uses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_envelopes (
    digest BLOB PRIMARY KEY,
    sender INTEGER NOT NULL,
    sent_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_envelopes_age ON seen_envelopes (sent_ms);
CREATE TABLE IF NOT EXISTS presignatures (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    sealed BLOB,
    state TEXT NOT NULL CHECK (state IN ('fresh', 'used', 'discarded')),
    created REAL NOT NULL,
    signers TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
);
"""


class StoreError(RuntimeError):
    """The store cannot honour a request (tampered ciphertext, wrong key)."""


class SessionStore:
    """Per-node durable store. Open one per node; `path=":memory:"` only for unit tests."""

    def __init__(self, path: str | Path, storage_key: bytes, power_safe: bool = True) -> None:
        """`power_safe=False` keeps every commit across a process crash but not across a
        power cut or OS crash (SQLite synchronous=OFF); the simulator, which only kills
        processes, uses it to avoid an fsync per nonce for hundreds of nodes on one disk."""
        if len(storage_key) < 32:
            raise ValueError("storage key must be at least 32 bytes")
        self.path = str(path)
        # A node's threads (peer links, timer, control service) take turns under one lock
        # (`synod.node.runner.NodeRunner`), so the connection may move between threads.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # freed cells are zeroed, not left behind
        self._db.execute(f"PRAGMA synchronous={'FULL' if power_safe else 'OFF'}")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(presignatures)")}
        if "signers" not in columns:  # a store from before presignatures named their signers
            self._db.execute(
                "ALTER TABLE presignatures ADD COLUMN signers TEXT NOT NULL DEFAULT ''"
            )
        # The replay memory is written for every accepted envelope: on its own connection
        # with synchronous=NORMAL it survives a process crash without an fsync per message
        # (a power cut may lose its last few entries; nonces keep the setting above).
        self._seen_db = self._db
        if self.path != ":memory:":
            self._seen_db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            self._seen_db.execute("PRAGMA busy_timeout=5000")
            self._seen_db.execute("PRAGMA synchronous=NORMAL")
        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"synod/session-store/v1").derive(
            storage_key
        )
        self._aead = ChaCha20Poly1305(key)
        self._unsettled = False  # a take's erased ciphertext may still be on disk
        self._scrub()  # what a crash between a take and its `settle` left behind

    def settle(self) -> None:
        """Erase from disk the ciphertexts the takes since the last call erased from the
        database (a WAL checkpoint); nothing to do if there were none."""
        if self._unsettled:
            self._scrub()
            self._unsettled = False

    def close(self) -> None:
        self.settle()
        if self._seen_db is not self._db:
            self._seen_db.close()
        self._db.close()

    # -- sealing -----------------------------------------------------------
    def _seal(self, label: str, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, label.encode())

    def _open(self, label: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], label.encode())
        except InvalidTag:
            raise StoreError(f"sealed value {label!r} failed authentication") from None

    # -- nonces ------------------------------------------------------------
    def put_nonce(self, nonce_id: str, session_id: bytes, nonces: bytes) -> None:
        """Persist fresh nonces; returns after the transaction is durable. An id ever used
        before (even consumed or discarded) is refused: nonces are never replaced."""
        try:
            self._db.execute(
                "INSERT INTO nonces (id, session_id, sealed, state, created) "
                "VALUES (?, ?, ?, 'fresh', ?)",
                (nonce_id, session_id, self._seal("nonce:" + nonce_id, nonces), time.time()),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"nonce id {nonce_id!r} already exists") from None

    def take_nonce(self, nonce_id: str) -> bytes | None:
        """Consume a fresh nonce exactly once; None if unknown, used or discarded."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            row = cur.execute(
                "SELECT sealed FROM nonces WHERE id = ? AND state = 'fresh'", (nonce_id,)
            ).fetchone()
            if row is None:
                cur.execute("COMMIT")
                return None
            cur.execute("UPDATE nonces SET state = 'used', sealed = NULL WHERE id = ?", (nonce_id,))
            cur.execute("INSERT INTO nonce_uses (id, at) VALUES (?, ?)", (nonce_id, time.time()))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._unsettled = True
        return self._open("nonce:" + nonce_id, row[0])

    def _scrub(self) -> None:
        """Copy the WAL into the database and empty it, so an erased ciphertext survives in
        neither file (secure_delete zeroes it in the database pages)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def discard_session(self, session_id: bytes) -> int:
        """Retire every fresh nonce of a session (it ended or its aggregator changed)."""
        cur = self._db.execute(
            "UPDATE nonces SET state = 'discarded', sealed = NULL "
            "WHERE session_id = ? AND state = 'fresh'",
            (session_id,),
        )
        if cur.rowcount:
            self._scrub()
        return cur.rowcount

    def fresh_nonce_ids(self, session_id: bytes) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM nonces WHERE session_id = ? AND state = 'fresh' ORDER BY created",
            (session_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def nonce_uses(self) -> list[str]:
        """Every take ever made, in order (for audits and tests)."""
        return [r[0] for r in self._db.execute("SELECT id FROM nonce_uses ORDER BY seq").fetchall()]

    def raw_nonce_rows(self) -> list[tuple[str, bytes | None]]:
        """The stored rows as they sit on disk (to check nothing is kept in clear)."""
        return [(r[0], r[1]) for r in self._db.execute("SELECT id, sealed FROM nonces").fetchall()]

    # -- replay memory (the router's window of accepted envelopes) ----------
    def remember_envelope(self, digest: bytes, sender: int, sent_ms: int) -> None:
        self._seen_db.execute(
            "INSERT OR IGNORE INTO seen_envelopes (digest, sender, sent_ms) VALUES (?, ?, ?)",
            (digest, sender, sent_ms),
        )

    def seen_envelopes(self, since_ms: int) -> list[tuple[bytes, int, int]]:
        rows = self._seen_db.execute(
            "SELECT digest, sender, sent_ms FROM seen_envelopes WHERE sent_ms >= ?", (since_ms,)
        ).fetchall()
        return [(bytes(r[0]), int(r[1]), int(r[2])) for r in rows]

    def forget_envelopes(self, before_ms: int) -> None:
        self._seen_db.execute("DELETE FROM seen_envelopes WHERE sent_ms < ?", (before_ms,))

    # -- presignatures -----------------------------------------------------
    def put_presignature(
        self, presignature_id: str, key_id: str, presignature: ecdsa.Presignature
    ) -> None:
        """Move a fresh presignature in (the object is used up); durable on return. An id
        ever used before is refused, and the presignature is then lost rather than kept
        in a second place. Its signers (the crate's indices) are kept beside it, in clear."""
        signers = ",".join(str(i) for i in presignature.signers)
        sealed = self._seal(
            "presignature:" + presignature_id, ecdsa.move_presignature_out(presignature)
        )
        try:
            self._db.execute(
                "INSERT INTO presignatures (id, key_id, sealed, state, created, signers) "
                "VALUES (?, ?, ?, 'fresh', ?, ?)",
                (presignature_id, key_id, sealed, time.time(), signers),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"presignature id {presignature_id!r} already exists") from None

    def take_presignature(self, presignature_id: str) -> ecdsa.Presignature | None:
        """Take a fresh presignature out exactly once (erased in the same transaction, from
        disk by `settle`); None if unknown, taken or discarded. Sign with it only after this
        returns."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            row = cur.execute(
                "SELECT sealed FROM presignatures WHERE id = ? AND state = 'fresh'",
                (presignature_id,),
            ).fetchone()
            if row is None:
                cur.execute("COMMIT")
                return None
            cur.execute(
                "UPDATE presignatures SET state = 'used', sealed = NULL WHERE id = ?",
                (presignature_id,),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._unsettled = True
        return ecdsa._presignature_from_store(self._open("presignature:" + presignature_id, row[0]))

    def fresh_presignature_ids(self, key_id: str) -> list[str]:
        return [pid for pid, _ in self.fresh_presignatures(key_id)]

    def fresh_presignatures(self, key_id: str) -> list[tuple[str, tuple[int, ...]]]:
        """(id, signers as the crate's indices) of a key's fresh presignatures, oldest first."""
        rows = self._db.execute(
            "SELECT id, signers FROM presignatures WHERE key_id = ? AND state = 'fresh' "
            "ORDER BY created, id",
            (key_id,),
        ).fetchall()
        return [(r[0], tuple(int(x) for x in r[1].split(",") if x)) for r in rows]

    def fresh_presignature_counts(self) -> dict[str, int]:
        """Fresh presignatures per key (the pool's level)."""
        rows = self._db.execute(
            "SELECT key_id, COUNT(*) FROM presignatures WHERE state = 'fresh' GROUP BY key_id"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def discard_presignatures(self, key_id: str, older_than: float | None = None) -> int:
        """Retire the fresh presignatures of a key (all, or those created before a time)."""
        cur = self._db.execute(
            "UPDATE presignatures SET state = 'discarded', sealed = NULL "
            "WHERE key_id = ? AND state = 'fresh' AND created < ?",
            (key_id, float("inf") if older_than is None else older_than),
        )
        if cur.rowcount:
            self._scrub()
        return cur.rowcount

    def raw_presignature_rows(self) -> list[tuple[str, bytes | None]]:
        """The stored rows as they sit on disk (to check nothing is kept in clear)."""
        rows = self._db.execute("SELECT id, sealed FROM presignatures").fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- secrets -----------------------------------------------------------
    def put_secret(self, name: str, value: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO secrets (name, sealed) VALUES (?, ?)",
            (name, self._seal("secret:" + name, value)),
        )

    def get_secret(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT sealed FROM secrets WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._open("secret:" + name, row[0])

    def delete_secret(self, name: str) -> None:
        self._db.execute("DELETE FROM secrets WHERE name = ?", (name,))
