"""The deposit watchers' cursors: per watcher, the hash of every block it has processed
recently, so a restart resumes where it stopped and a changed hash reveals a reorganisation.

The rows live beside the ledger's tables (same database) with their own migrations; they are
a node's local progress, not consensus state: losing them only means scanning again, and the
ledger refuses a deposit credited twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from synod.state.db import PostgresDatabase, SqliteDatabase, migrate

WATCH_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE watch_blocks (
            watcher TEXT NOT NULL, height BIGINT NOT NULL, hash TEXT NOT NULL,
            PRIMARY KEY (watcher, height)
        )
        """,
    ),
]


@dataclass(frozen=True)
class Cursor:
    height: int
    hash: str


class WatchStore:
    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        migrate(db, WATCH_MIGRATIONS, "watch_schema_version")

    def cursor(self, watcher: str) -> Cursor | None:
        """The highest block processed, or None before the first."""
        rows = self.db.query(
            "SELECT height, hash FROM watch_blocks WHERE watcher = ? ORDER BY height DESC LIMIT 1",
            (watcher,),
        )
        return Cursor(int(rows[0][0]), str(rows[0][1])) if rows else None

    def recorded(self, watcher: str) -> list[Cursor]:
        """Every remembered block, highest first."""
        rows = self.db.query(
            "SELECT height, hash FROM watch_blocks WHERE watcher = ? ORDER BY height DESC",
            (watcher,),
        )
        return [Cursor(int(h), str(x)) for h, x in rows]

    def advance(self, watcher: str, height: int, block_hash: str, keep: int) -> None:
        """Record block `height` as processed; forget blocks more than `keep` below it."""
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM watch_blocks WHERE watcher = ? AND (height >= ? OR height <= ?)",
                (watcher, height, height - keep),
            )
            self.db.execute(
                "INSERT INTO watch_blocks (watcher, height, hash) VALUES (?, ?, ?)",
                (watcher, height, block_hash),
            )

    def rewind(self, watcher: str, height: int) -> None:
        """Forget every block above `height` (they left the chain)."""
        self.db.execute(
            "DELETE FROM watch_blocks WHERE watcher = ? AND height > ?", (watcher, height)
        )
