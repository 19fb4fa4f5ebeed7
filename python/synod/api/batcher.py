"""Group commit for the API's writes: one database commit (one fsync) for every write that is
ready at the same moment, instead of one each.

Each write job runs inside the shared transaction in its own savepoint, so a job that raises
undoes only its own changes; the others commit. No caller hears back before its batch is
durable: a response that says "accepted" is never ahead of the disk. Jobs run one at a time on
the event loop, in arrival order, which is also the order of their audit rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from synod.state.db import PostgresDatabase, SqliteDatabase

T = TypeVar("T")

RETRY_SQLSTATES = frozenset({"40001", "40P01", "23505"})
"""Serialization failure, deadlock, and a unique key taken by a concurrent writer (another
process appending to the audit trail): the whole batch is rolled back and run again."""
ATTEMPTS = 3


def _retryable(err: BaseException) -> bool:
    return getattr(err, "sqlstate", None) in RETRY_SQLSTATES


class _Retry(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class CommitBatcher:
    def __init__(self, db: SqliteDatabase | PostgresDatabase, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self.batches = 0
        self.jobs = 0

    async def run(self, job: Callable[[], T]) -> T:
        """Run `job` in the next batch; its result (or exception) once the batch committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after every handler already ready has queued its job
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        for attempt in range(ATTEMPTS):
            try:
                outcomes = self._commit(batch)
                break
            except _Retry as retry:
                if attempt + 1 == ATTEMPTS:
                    outcomes = [(future, None, retry.cause) for _, future in batch]
            except Exception as err:  # the commit failed: nothing in the batch happened
                if _retryable(err) and attempt + 1 < ATTEMPTS:
                    continue
                outcomes = [(future, None, err) for _, future in batch]
                break
        self.batches += 1
        self.jobs += len(batch)
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        if self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._scheduled = False

    def _commit(
        self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        with self.db.transaction():
            for job, future in batch:
                try:
                    with self.db.savepoint():
                        outcomes.append((future, job(), None))
                except Exception as err:  # the job's own failure, undone; delivered below
                    if _retryable(err):
                        raise _Retry(err) from err  # a conflict with another writer: all again
                    outcomes.append((future, None, err))
        return outcomes
