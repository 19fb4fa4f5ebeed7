"""One small database interface over SQLite (embedded default) and PostgreSQL (production).

SQL is written once with ``?`` placeholders; the PostgreSQL backend rewrites them.
Schema changes are numbered migrations applied in order inside a transaction and
recorded in ``schema_version``, so every store can be upgraded in place.
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE applied_tx (
            tx_id TEXT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, kind TEXT NOT NULL,
            body TEXT NOT NULL, result TEXT NOT NULL
        );
        CREATE TABLE withdrawals (
            withdraw_id TEXT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE,
            request_id TEXT NOT NULL UNIQUE,
            chain TEXT NOT NULL, asset TEXT NOT NULL, to_addr TEXT NOT NULL, amount TEXT NOT NULL,
            status TEXT NOT NULL, fee TEXT, template_hash TEXT, template TEXT, session_id TEXT,
            signature_ref TEXT, txid TEXT, height BIGINT, sessions BIGINT NOT NULL DEFAULT 0,
            attempt BIGINT NOT NULL DEFAULT 0, reason TEXT
        );
        CREATE INDEX withdrawals_queue ON withdrawals (chain, asset, status, seq);
        CREATE TABLE lots (
            lot_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, chain TEXT NOT NULL, asset TEXT NOT NULL,
            amount TEXT NOT NULL, remaining TEXT NOT NULL, height BIGINT NOT NULL,
            exhausted BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX lots_fifo ON lots (chain, asset, exhausted, seq);
        CREATE TABLE utxos (
            outpoint TEXT PRIMARY KEY, seq BIGINT NOT NULL, value TEXT NOT NULL,
            script TEXT NOT NULL,
            height BIGINT NOT NULL, locked_by TEXT, spent_by TEXT
        );
        CREATE INDEX utxos_age ON utxos (height, seq);
        CREATE INDEX utxos_free ON utxos (locked_by, spent_by, height, seq);
        CREATE TABLE reservations (
            withdraw_id TEXT NOT NULL, source TEXT NOT NULL, asset TEXT NOT NULL,
            amount TEXT NOT NULL,
            PRIMARY KEY (withdraw_id, source, asset)
        );
        CREATE TABLE balances (
            chain TEXT NOT NULL, asset TEXT NOT NULL, deposited TEXT NOT NULL,
            available TEXT NOT NULL,
            reserved TEXT NOT NULL, withdrawn TEXT NOT NULL, fees TEXT NOT NULL,
            PRIMARY KEY (chain, asset)
        );
        """,
    ),
    (
        2,
        # EVM EOA mode: the account nonce a withdrawal's transactions use, kept across templates.
        "ALTER TABLE withdrawals ADD COLUMN account_nonce BIGINT",
    ),
    (
        3,
        # Funds that left by a transaction the ledger did not make (a Bitcoin input spent
        # elsewhere): written off here, so conservation still adds up.
        "ALTER TABLE balances ADD COLUMN external TEXT NOT NULL DEFAULT '0'",
    ),
    (
        4,
        # Every transaction ever broadcast for a withdrawal, with the account nonce it used
        # (EOA mode: the transactions at one nonce are siblings, at most one executes).
        """
        CREATE TABLE broadcasts (
            withdraw_id TEXT NOT NULL, txid TEXT NOT NULL, seq BIGINT NOT NULL,
            account_nonce BIGINT,
            PRIMARY KEY (withdraw_id, txid)
        )
        """,
    ),
    (
        5,
        # The withdrawal each applied transaction is about (its state history, indexed), when
        # a request was submitted (a field of the request), and the operator surface: API
        # tokens (only a hash of each), idempotency keys, and the hash-chained audit trail.
        """
        ALTER TABLE applied_tx ADD COLUMN withdraw_id TEXT;
        CREATE INDEX applied_tx_withdrawal ON applied_tx (withdraw_id, seq);
        CREATE INDEX applied_tx_kind ON applied_tx (kind, seq);
        ALTER TABLE withdrawals ADD COLUMN requested_at BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX withdrawals_requested ON withdrawals (requested_at, seq);
        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """,
    ),
    (
        6,
        # Power transitions: a committee per epoch, the transition queue, strikes per member;
        # the epoch whose key signs each withdrawal, and migration transactions kept as
        # withdrawals of purpose 'migration'; the key epoch each deposit lot was paid to.
        """
        CREATE TABLE committees (
            epoch BIGINT PRIMARY KEY, members TEXT NOT NULL, threshold BIGINT NOT NULL,
            keys TEXT NOT NULL, status TEXT NOT NULL
        );
        CREATE TABLE transitions (
            epoch BIGINT PRIMARY KEY, from_epoch BIGINT NOT NULL, state TEXT NOT NULL,
            members TEXT NOT NULL, threshold BIGINT NOT NULL, attempt BIGINT NOT NULL,
            session_id TEXT, reason TEXT, culprits TEXT NOT NULL, keys TEXT, addresses TEXT,
            key_ready_at BIGINT, active_at BIGINT
        );
        CREATE TABLE strikes (
            member BIGINT PRIMARY KEY, count BIGINT NOT NULL, last_reason TEXT NOT NULL
        );
        ALTER TABLE withdrawals ADD COLUMN purpose TEXT NOT NULL DEFAULT 'withdrawal';
        ALTER TABLE withdrawals ADD COLUMN key_epoch BIGINT;
        CREATE INDEX withdrawals_epoch ON withdrawals (key_epoch, purpose, status);
        ALTER TABLE lots ADD COLUMN key_epoch BIGINT NOT NULL DEFAULT 0
        """,
    ),
    (
        7,
        # The chain data a template's signed bytes commit to, agreed with StartSign (a Solana
        # recent blockhash), so that every member's worker signs the same message.
        "ALTER TABLE withdrawals ADD COLUMN sign_context TEXT",
    ),
]


class Database(Protocol):
    backend: str

    def transaction(self) -> Any: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class _Transactional(ABC):
    """Nested transactions over one connection: the outermost `with` begins and commits (or
    rolls back on any exception); inner ones join it. Subclasses say how to begin."""

    BEGIN = "BEGIN"
    _depth = 0

    @abstractmethod
    def _raw(self, statement: str) -> None:
        """Run one statement without parameters."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._raw(self.BEGIN)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._raw("ROLLBACK")
            raise
        else:
            self._raw("COMMIT")
        finally:
            self._depth = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: on an exception undo only what this block wrote, then re-raise
        (the transaction goes on), so many independent writes can share one commit."""
        if not self._depth:
            raise RuntimeError("a savepoint needs an open transaction")
        self._raw("SAVEPOINT synod_sp")
        try:
            yield
        except BaseException:
            self._raw("ROLLBACK TO SAVEPOINT synod_sp")
            self._raw("RELEASE SAVEPOINT synod_sp")
            raise
        self._raw("RELEASE SAVEPOINT synod_sp")

    def executescript(self, sql: str) -> None:
        for statement in _statements(sql):
            self._raw(statement)


class SqliteDatabase(_Transactional):
    """SQLite in WAL mode; every transaction takes the write lock up front (BEGIN IMMEDIATE)."""

    backend = "sqlite"
    BEGIN = "BEGIN IMMEDIATE"
    faults: tuple[type[Exception], ...] = (
        sqlite3.OperationalError,
        sqlite3.InternalError,
        MemoryError,
    )
    """Errors of the store itself (disk, lock, a closed connection, memory), never of what a
    transaction carries: a replica stops on these instead of recording an outcome."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self)

    def _raw(self, statement: str) -> None:
        self._conn.execute(statement)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn.execute(sql, tuple(params)).fetchall())

    def sync(self) -> None:
        """SQLite runs each statement when it is given: nothing is waiting."""

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase(_Transactional):
    """PostgreSQL through psycopg 3; SERIALIZABLE transactions, `?` placeholders rewritten."""

    backend = "postgres"
    BEGIN = "BEGIN ISOLATION LEVEL SERIALIZABLE"

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.faults: tuple[type[Exception], ...] = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg.errors.InternalError,
            MemoryError,
        )
        """As `SqliteDatabase.faults`."""
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._pipeline: Any = None
        migrate(self)

    def _raw(self, statement: str) -> None:
        self._conn.execute(statement)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return list(cur.fetchall())

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Pipeline mode for a batch inside an open transaction: writes are sent without
        waiting for their answers (`execute` then returns -1), a query waits for everything
        before it. Errors surface at the next query, at `sync`, or at the end of the batch."""
        with self._conn.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    def sync(self) -> None:
        """Inside `pipeline`: wait for every statement sent so far, raising its error here."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def close(self) -> None:
        self._conn.close()


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def migrate(
    db: SqliteDatabase | PostgresDatabase,
    migrations: Sequence[tuple[int, str]] = MIGRATIONS,
    version_table: str = "schema_version",
) -> int:
    """Apply pending migrations; returns the schema version.

    A component with tables of its own beside the ledger's (the deposit watchers' cursors,
    the webhook outbox) passes its own list and version table, so its numbering is its own.
    """
    with db.transaction():
        db.execute(f"CREATE TABLE IF NOT EXISTS {version_table} (version BIGINT NOT NULL)")
        rows = db.query(f"SELECT version FROM {version_table}")
        current = rows[0][0] if rows else 0
        for version, script in migrations:
            if version > current:
                db.executescript(script)
                current = version
        if rows:
            db.execute(f"UPDATE {version_table} SET version = ?", (current,))
        else:
            db.execute(f"INSERT INTO {version_table} (version) VALUES (?)", (current,))
    return int(current)


_LIBPQ_KEYWORDS = frozenset(
    {"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "service"}
)


ENV_PREFIX = "env:"


def resolve_url(value: str) -> str:
    """A store URL as given on a command line: ``env:NAME`` names the environment variable
    that holds it (so a password in a PostgreSQL URL never shows in a process list)."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX) :]
    url = os.environ.get(name)
    if not url:
        raise ValueError(f"the environment variable {name} (from {value!r}) is not set")
    return url


def is_dsn(value: str) -> bool:
    """Whether `value` names a server store (a PostgreSQL URL or a libpq keyword DSN) or a
    ``sqlite:`` URL, rather than a plain path."""
    first = value.split(maxsplit=1)[0] if value.strip() else ""
    keyword_dsn = "=" in first and first.split("=", 1)[0] in _LIBPQ_KEYWORDS
    return value.startswith(("postgresql://", "postgres://", "sqlite:")) or keyword_dsn


def open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    """``sqlite:///path/to.db`` (or a plain path), ``postgresql://...`` or a libpq keyword DSN
    (``host=... dbname=...``)."""
    if is_dsn(url) and not url.startswith("sqlite:"):
        return PostgresDatabase(url)
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SqliteDatabase(path)
