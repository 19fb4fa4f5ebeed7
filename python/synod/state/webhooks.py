"""Webhook subscriptions, the outbox and the delivery log, beside the ledger's tables.

Events are derived from the ledger's own log of applied transactions (`applied_tx`), never
reported by the code paths that apply them: `fill_outbox` reads the log past a persisted
cursor and, in the same database transaction, queues one delivery per matching subscription
and moves the cursor. A crash anywhere leaves either both or neither, so no event is lost and
none is queued twice (a delivery is unique per subscription and event).

A subscription's secret (the HMAC key its deliveries are signed with) is kept sealed: a
`SecretBox`, under a key that lives outside the database, encrypts it with ChaCha20-Poly1305
bound to the subscription id, so the rows alone do not give it away and a sealed secret moved
to another subscription does not open. Rows written before sealing are sealed when the store
is opened.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from synod.state.db import PostgresDatabase, SqliteDatabase, migrate
from synod.state.transactions import DepositCredit

WEBHOOK_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE webhook_subscriptions (
            sub_id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL,
            kinds TEXT NOT NULL, active BIGINT NOT NULL, after_seq BIGINT NOT NULL
        );
        CREATE TABLE webhook_cursor (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);
        CREATE TABLE webhook_outbox (
            delivery_id TEXT PRIMARY KEY, sub_id TEXT NOT NULL, event_id TEXT NOT NULL,
            kind TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
            attempts BIGINT NOT NULL, next_at DOUBLE PRECISION NOT NULL, last_error TEXT,
            UNIQUE (sub_id, event_id)
        );
        CREATE INDEX webhook_due ON webhook_outbox (status, next_at, seq);
        CREATE TABLE webhook_attempts (
            delivery_id TEXT NOT NULL, sub_id TEXT NOT NULL, attempt BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL, status_code BIGINT, error TEXT,
            PRIMARY KEY (delivery_id, attempt)
        );
        CREATE INDEX webhook_attempts_sub ON webhook_attempts (sub_id, at);
        """,
    ),
    (
        2,
        # The secret sealed by a `SecretBox` (hex of nonce ‖ ciphertext); `secret` is then ''.
        # Rows from before are sealed when a store is opened (`WebhookStore.seal_plaintext`).
        "ALTER TABLE webhook_subscriptions ADD COLUMN sealed TEXT",
    ),
]

MAX_URL = 2048
OUTBOX_BATCH = 500  # ledger transactions read per fill
MAX_ERROR = 500  # characters of an error kept in the log
SECRET_KEY_LEN = 32
_NONCE_LEN = 12


class EventKind(enum.StrEnum):
    DEPOSIT_CREDITED = "deposit.credited"
    WITHDRAWAL_STATE = "withdrawal.state_changed"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt used


class SubscriptionError(ValueError):
    """A subscription request that cannot be accepted (bad URL, unknown event kind)."""


class SecretKeyError(Exception):
    """A sealed subscription secret that does not open under the key given (a wrong key, or
    an altered row); the message names the subscription, never a secret."""


class SecretBox:
    """Seals subscription secrets with ChaCha20-Poly1305 under a key kept outside the database;
    the associated data binds each sealed secret to its subscription id."""

    def __init__(self, key: bytes) -> None:
        if len(key) != SECRET_KEY_LEN:
            raise ValueError(f"a webhook secret key is {SECRET_KEY_LEN} bytes")
        self._aead = ChaCha20Poly1305(key)

    def __repr__(self) -> str:
        return "SecretBox()"

    @staticmethod
    def _ad(sub_id: str) -> bytes:
        return b"synod/webhook-secret/v1\x00" + sub_id.encode()

    def seal(self, sub_id: str, secret: str) -> str:
        nonce = os.urandom(_NONCE_LEN)
        return (nonce + self._aead.encrypt(nonce, secret.encode(), self._ad(sub_id))).hex()

    def open(self, sub_id: str, sealed: str) -> str:
        try:
            raw = bytes.fromhex(sealed)
            return self._aead.decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], self._ad(sub_id)).decode()
        except (ValueError, InvalidTag):  # not hex, too short, or it does not authenticate
            raise SecretKeyError(
                f"the secret of subscription {sub_id} does not open under the webhook key "
                "(a wrong key, or the row was altered)"
            ) from None


@dataclass(frozen=True)
class Subscription:
    sub_id: str
    url: str
    kinds: tuple[EventKind, ...]
    active: bool
    # The HMAC key, only in the answer to `subscribe` ('' when listed): never in a repr or log.
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    sub_id: str
    event_id: str
    kind: EventKind
    seq: int
    body: str
    status: DeliveryStatus
    attempts: int
    next_at: float
    last_error: str | None


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    event_id: str
    attempt: int
    at: float
    status_code: int | None
    error: str | None


def event_of(
    seq: int, tx_id: str, kind: str, body: dict[str, Any], result: dict[str, Any]
) -> tuple[EventKind, dict[str, Any]] | None:
    """The webhook event a ledger transaction makes (None for none), as (kind, payload)."""
    if kind == DepositCredit.KIND:
        data: dict[str, Any] = {
            "chain": body["chain"],
            "asset": body["asset"],
            "amount": str(body["amount"]),
            "ref": body["ref"],
            "height": body["height"],
        }
        event = EventKind.DEPOSIT_CREDITED
    elif "withdraw_id" in result and "status" in result:
        data = {"withdraw_id": result["withdraw_id"], "state": result["status"]}
        for name in ("request_id", "txid", "height", "reason"):
            if body.get(name) not in (None, ""):
                data[name] = body[name]
        event = EventKind.WITHDRAWAL_STATE
    else:
        return None
    return event, {"id": tx_id, "type": event.value, "seq": seq, "data": data}


def check_url(url: str) -> str:
    """http(s)://host/..., bounded, printable, and without credentials in it (the URL is listed
    to every reader of the subscriptions; the secret is what authenticates a delivery)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a malformed port or IPv6 literal
        parts, port_ok = urlsplit(""), False
    if (
        len(url) > MAX_URL
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise SubscriptionError(f"a webhook URL is http(s)://host/..., at most {MAX_URL} long")
    if parts.username is not None or parts.password is not None:
        raise SubscriptionError("a webhook URL carries no user or password")
    return url


def _kinds(kinds: Iterable[str]) -> tuple[EventKind, ...]:
    try:
        chosen = tuple(sorted({EventKind(k) for k in kinds}))
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise SubscriptionError(f"unknown event kind in {list(kinds)} (known: {known})") from None
    if not chosen:
        raise SubscriptionError("subscribe to at least one event kind")
    return chosen


class WebhookStore:
    """The tables, in `db`; the outbox reads the ledger's `applied_tx` from `ledger` (a
    member's replica beside the API's own store), by default `db` itself (the solo ledger)."""

    def __init__(
        self,
        db: SqliteDatabase | PostgresDatabase,
        box: SecretBox,
        ledger: SqliteDatabase | PostgresDatabase | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.ledger = ledger or db
        migrate(db, WEBHOOK_MIGRATIONS, "webhook_schema_version")
        self.seal_plaintext()

    def seal_plaintext(self) -> int:
        """Seal the secrets of rows written before sealing (clearing the plaintext); the number
        sealed."""
        with self.db.transaction():
            rows = self.db.query(
                "SELECT sub_id, secret FROM webhook_subscriptions WHERE sealed IS NULL"
            )
            for sub_id, secret in rows:
                self.db.execute(
                    "UPDATE webhook_subscriptions SET sealed = ?, secret = '' WHERE sub_id = ?",
                    (self.box.seal(str(sub_id), str(secret)), sub_id),
                )
        return len(rows)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, url: str, kinds: Iterable[str], secret: str | None = None) -> Subscription:
        """A new active subscription, for events applied from now on."""
        url, chosen = check_url(url), _kinds(kinds)
        secret = secret or secrets.token_hex(32)
        if len(secret) < 16 or len(secret) > 256:
            raise SubscriptionError("a webhook secret is 16 to 256 characters")
        sub_id = "sub_" + secrets.token_hex(8)
        with self.db.transaction():
            last = self.ledger.query("SELECT COALESCE(MAX(seq), 0) FROM applied_tx")[0][0]
            self.db.execute(
                "INSERT INTO webhook_subscriptions (sub_id, url, secret, sealed, kinds, active, "
                "after_seq) VALUES (?, ?, '', ?, ?, 1, ?)",
                (sub_id, url, self.box.seal(sub_id, secret), ",".join(chosen), int(last)),
            )
        return Subscription(sub_id, url, chosen, True, secret)

    def unsubscribe(self, sub_id: str) -> bool:
        """Deactivate (deliveries not yet made are dropped); False if unknown."""
        with self.db.transaction():
            n = self.db.execute(
                "UPDATE webhook_subscriptions SET active = 0 WHERE sub_id = ?", (sub_id,)
            )
            self.db.execute(
                "UPDATE webhook_outbox SET status = ?, last_error = ? "
                "WHERE sub_id = ? AND status = ?",
                (DeliveryStatus.FAILED, "unsubscribed", sub_id, DeliveryStatus.PENDING),
            )
        return n > 0

    def subscriptions(self, active_only: bool = False) -> list[Subscription]:
        """The subscriptions, without their secrets (`secret` opens one)."""
        sql = "SELECT sub_id, url, kinds, active FROM webhook_subscriptions"
        if active_only:
            sql += " WHERE active = 1"
        return [
            Subscription(str(s), str(u), tuple(EventKind(k) for k in str(k_).split(",")), bool(a))
            for s, u, k_, a in self.db.query(sql + " ORDER BY sub_id")
        ]

    def subscription(self, sub_id: str) -> Subscription | None:
        return next((s for s in self.subscriptions() if s.sub_id == sub_id), None)

    def secret(self, sub_id: str) -> str:
        """The subscription's signing secret, opened; `SecretKeyError` if it does not open,
        KeyError for an unknown subscription."""
        rows = self.db.query("SELECT sealed FROM webhook_subscriptions WHERE sub_id = ?", (sub_id,))
        if not rows:
            raise KeyError(sub_id)
        return self.box.open(sub_id, str(rows[0][0]))

    # ------------------------------------------------------------------ outbox
    def fill_outbox(self, now: float, batch: int = OUTBOX_BATCH) -> int:
        """Queue deliveries for ledger transactions past the cursor; the number queued."""
        queued = 0
        with self.db.transaction():
            rows = self.db.query("SELECT seq FROM webhook_cursor WHERE name = 'outbox'")
            cursor = int(rows[0][0]) if rows else 0
            txs = self.ledger.query(
                "SELECT seq, tx_id, kind, body, result FROM applied_tx WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (cursor, batch),
            )
            if not txs:
                return 0
            subs = self.db.query(
                "SELECT sub_id, kinds, after_seq FROM webhook_subscriptions WHERE active = 1"
            )
            for seq, tx_id, kind, body, result in txs:
                made = event_of(
                    int(seq), str(tx_id), str(kind), json.loads(body), json.loads(result)
                )
                if made is None:
                    continue
                event, payload = made
                text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
                for sub_id, kinds, after in subs:
                    if event.value not in str(kinds).split(",") or int(seq) <= int(after):
                        continue
                    self.db.execute(
                        "INSERT INTO webhook_outbox (delivery_id, sub_id, event_id, kind, seq, "
                        "body, status, attempts, next_at, last_error) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL)",
                        (
                            f"{sub_id}:{tx_id}",
                            sub_id,
                            tx_id,
                            event.value,
                            int(seq),
                            text,
                            DeliveryStatus.PENDING,
                            now,
                        ),
                    )
                    queued += 1
            last = int(txs[-1][0])
            if rows:
                self.db.execute("UPDATE webhook_cursor SET seq = ? WHERE name = 'outbox'", (last,))
            else:
                self.db.execute(
                    "INSERT INTO webhook_cursor (name, seq) VALUES ('outbox', ?)", (last,)
                )
        return queued

    def due(self, now: float, limit: int, skip: Iterable[str] = ()) -> list[Delivery]:
        """Pending deliveries due by `now`, oldest first, except those of the subscriptions in
        `skip` (the ones with a delivery under way)."""
        # `next_at + 0` keeps the time comparison off the index. On SQLite 3.40, once LiteSVM
        # has executed the SPL token program in the same process (the Solana tests do), an
        # indexed range compare of a whole-valued REAL (which SQLite stores as an integer)
        # with a fractional bound came out wrong: a delivery due at t+3 s was found due at
        # t+2.5 s. The unindexed compare stays exact there. Production runs no LiteSVM; the
        # cause inside the process is not found. The index still serves `status`.
        skipped = sorted(set(skip))
        unless = f"AND sub_id NOT IN ({', '.join('?' * len(skipped))}) " if skipped else ""
        rows = self.db.query(
            "SELECT delivery_id, sub_id, event_id, kind, seq, body, status, attempts, next_at, "
            f"last_error FROM webhook_outbox WHERE status = ? AND next_at + 0 <= ? {unless}"
            "ORDER BY next_at, seq LIMIT ?",
            (DeliveryStatus.PENDING, now, *skipped, limit),
        )
        return [_delivery(r) for r in rows]

    def record_attempt(
        self,
        delivery: Delivery,
        at: float,
        status_code: int | None,
        error: str | None,
        next_status: DeliveryStatus,
        next_at: float,
    ) -> None:
        """Log one attempt and move the delivery on, in one transaction."""
        attempt = delivery.attempts + 1
        error = None if error is None else error[:MAX_ERROR]
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO webhook_attempts (delivery_id, sub_id, attempt, at, status_code, "
                "error) VALUES (?, ?, ?, ?, ?, ?)",
                (delivery.delivery_id, delivery.sub_id, attempt, at, status_code, error),
            )
            self.db.execute(
                "UPDATE webhook_outbox SET status = ?, attempts = ?, next_at = ?, last_error = ? "
                "WHERE delivery_id = ? AND status = ?",
                (
                    next_status,
                    attempt,
                    next_at,
                    error,
                    delivery.delivery_id,
                    DeliveryStatus.PENDING,
                ),
            )

    def deliveries(self, sub_id: str, limit: int = 100) -> list[Delivery]:
        rows = self.db.query(
            "SELECT delivery_id, sub_id, event_id, kind, seq, body, status, attempts, next_at, "
            "last_error FROM webhook_outbox WHERE sub_id = ? ORDER BY seq DESC LIMIT ?",
            (sub_id, limit),
        )
        return [_delivery(r) for r in rows]

    def attempts(self, sub_id: str, limit: int = 100) -> list[Attempt]:
        """The delivery log of one subscription, newest first."""
        rows = self.db.query(
            "SELECT a.delivery_id, o.event_id, a.attempt, a.at, a.status_code, a.error "
            "FROM webhook_attempts a JOIN webhook_outbox o ON o.delivery_id = a.delivery_id "
            "WHERE a.sub_id = ? ORDER BY a.at DESC, a.attempt DESC LIMIT ?",
            (sub_id, limit),
        )
        return [
            Attempt(str(d), str(e), int(n), float(t), None if c is None else int(c), err)
            for d, e, n, t, c, err in rows
        ]


def _delivery(row: tuple[Any, ...]) -> Delivery:
    d, s, e, k, seq, body, status, attempts, next_at, err = row
    return Delivery(
        str(d),
        str(s),
        str(e),
        EventKind(k),
        int(seq),
        str(body),
        DeliveryStatus(status),
        int(attempts),
        float(next_at),
        err,
    )
