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
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with self.db.transaction():
                for job, future in batch:
                    try:
                        with self.db.savepoint():
                            outcomes.append((future, job(), None))
                    except Exception as err:  # the job's own failure, undone; delivered below
                        outcomes.append((future, None, err))
        except Exception as err:  # the commit failed: nothing in the batch happened
            outcomes = [(future, None, err) for _, future in batch]
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
