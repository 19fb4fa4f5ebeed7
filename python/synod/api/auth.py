"""API tokens, roles, and the rate limits per token and per client address.

A token is 256 random bits (`synod_` + URL-safe base64). It is shown once, when created; the
store keeps only its SHA-256 (a 256-bit random secret needs no slow hash) and a short public
`token_id` derived from that hash, which is what logs and the audit trail name.

Roles are ordered: a `viewer` reads, an `operator` also submits and cancels withdrawals, an
`admin` also reads the audit trail.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from synod.state.audit import prepare_audit
from synod.state.db import PostgresDatabase, SqliteDatabase, migrate

TOKEN_PREFIX = "synod_"
MAX_TOKEN_LENGTH = 128


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    role: Role
    name: str
    created_at: int
    revoked: bool = False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


API_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        # The API's own tables: its tokens and its idempotency records (the audit trail of its
        # calls: `prepare_audit`). The ledger's replicas never carry them.
        """
        CREATE TABLE IF NOT EXISTS api_tokens (
            token_hash TEXT PRIMARY KEY, token_id TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
            name TEXT NOT NULL, created_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS api_idempotency (
            token_id TEXT NOT NULL, idem_key TEXT NOT NULL, body_hash TEXT NOT NULL,
            status BIGINT NOT NULL, response TEXT NOT NULL, created_at BIGINT NOT NULL,
            PRIMARY KEY (token_id, idem_key)
        )
        """,
    ),
]


def prepare_api_store(db: SqliteDatabase | PostgresDatabase) -> None:
    """The API's tables and the audit table in `db` (its own database, or the solo
    ledger's)."""
    migrate(db, API_MIGRATIONS, "api_schema_version")
    prepare_audit(db)


class TokenStore:
    """Tokens in the store's `api_tokens` table (made here when missing)."""

    def __init__(
        self, db: SqliteDatabase | PostgresDatabase, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.clock = clock
        prepare_api_store(db)

    def create(self, role: Role, name: str) -> tuple[str, ApiToken]:
        """A new token: (the secret, shown only now; its record)."""
        if not name or len(name) > 100:
            raise ValueError("a token name is 1 to 100 characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(secret)
        record = ApiToken(digest[:16], Role(role), name, int(self.clock()))
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO api_tokens (token_hash, token_id, role, name, created_at, revoked) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (digest, record.token_id, record.role.value, name, record.created_at),
            )
        return secret, record

    def authenticate(self, presented: str) -> ApiToken | None:
        """The live token matching `presented`, or None."""
        if not presented.startswith(TOKEN_PREFIX) or len(presented) > MAX_TOKEN_LENGTH:
            return None
        digest = token_hash(presented)
        rows = self.db.query(
            "SELECT token_hash, token_id, role, name, created_at, revoked FROM api_tokens "
            "WHERE token_hash = ?",
            (digest,),
        )
        if not rows or not hmac.compare_digest(rows[0][0], digest) or rows[0][5]:
            return None
        _, token_id, role, name, created_at, _ = rows[0]
        return ApiToken(token_id, Role(role), name, int(created_at))

    def list(self) -> list[ApiToken]:
        rows = self.db.query(
            "SELECT token_id, role, name, created_at, revoked FROM api_tokens ORDER BY created_at"
        )
        return [ApiToken(r[0], Role(r[1]), r[2], int(r[3]), bool(r[4])) for r in rows]

    def revoke(self, token_id: str) -> bool:
        with self.db.transaction():
            return (
                self.db.execute("UPDATE api_tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
                > 0
            )


class RateLimiter:
    """A token bucket per key: `rate` requests per second on average, bursts up to `burst`.

    Memory is bounded: at most `max_keys` buckets, the least recently used dropped first (a
    dropped bucket comes back full, which only ever favours a client that went quiet)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> float:
        """0.0 if a request may go now (and take a token), else seconds until one may."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(host: str | None) -> str:
    """The rate-limit key of a client address: an IPv4 address itself, an IPv6 address its /64
    (one machine is commonly given a whole /64 and could otherwise take a fresh bucket for
    every request); a client without an address shares one key."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
