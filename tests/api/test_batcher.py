"""Group commit: concurrent writes share a commit, a failing one is undone alone, and two
concurrent requests with one Idempotency-Key write once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from synod.api.batcher import CommitBatcher
from synod.state.db import SqliteDatabase

from .conftest import Api
from .test_withdrawals import body, fund


def test_a_failing_job_is_undone_alone(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "b.db")
    batcher = CommitBatcher(db)

    def write(key: str, fail: bool = False) -> str:
        db.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))
        if fail:
            raise ValueError(f"{key} refused")
        return key

    async def main() -> list[object]:
        return await asyncio.gather(
            batcher.run(lambda: write("a")),
            batcher.run(lambda: write("b", fail=True)),
            batcher.run(lambda: write("c")),
            return_exceptions=True,
        )

    a, b, c = asyncio.run(main())
    assert (a, c) == ("a", "c") and isinstance(b, ValueError)
    assert batcher.batches == 1 and batcher.jobs == 3
    assert sorted(r[0] for r in db.query("SELECT key FROM meta WHERE value = 'x'")) == ["a", "c"]
    db.close()


def test_concurrent_requests_share_commits_and_one_idempotency_key(api: Api) -> None:
    fund(api)
    transport = httpx.ASGITransport(app=api.client.app)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            same = [
                client.post(
                    "/v1/withdrawals",
                    json=body(external_id="twin"),
                    headers=api.headers(**{"Idempotency-Key": "one"}),
                )
                for _ in range(4)
            ]
            others = [
                client.post(
                    "/v1/withdrawals",
                    json=body(external_id=f"x{i}", amount=str(1000 + i)),
                    headers=api.headers(),
                )
                for i in range(12)
            ]
            return list(await asyncio.gather(*same, *others))

    responses = asyncio.run(main())
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    twins = responses[:4]
    assert len({r.json()["id"] for r in twins}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in twins) == 3
    assert len(api.ledger.withdrawals()) == 13
    assert api.audit.verify().ok


class _Conflict(Exception):
    sqlstate = "40001"  # what psycopg reports for a serialization failure


def test_a_conflict_with_another_writer_reruns_the_whole_batch(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "r.db")
    batcher = CommitBatcher(db)
    calls = {"a": 0, "b": 0}

    def write(key: str, conflicts: int) -> str:
        calls[key] += 1
        db.execute("INSERT INTO meta (key, value) VALUES (?, 'y')", (key,))
        if calls[key] <= conflicts:
            raise _Conflict("could not serialize access")
        return key

    async def main() -> list[object]:
        return await asyncio.gather(
            batcher.run(lambda: write("a", 0)),
            batcher.run(lambda: write("b", 1)),
            return_exceptions=True,
        )

    assert asyncio.run(main()) == ["a", "b"]
    assert calls == {"a": 2, "b": 2}  # the first attempt was rolled back as a whole
    assert sorted(r[0] for r in db.query("SELECT key FROM meta WHERE value = 'y'")) == ["a", "b"]
    db.close()
