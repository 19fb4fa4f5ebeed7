"""The same blocks replayed into fresh applications give the same app hash at every height and
the same state, on SQLite and on PostgreSQL (the check a new replica or an auditor runs)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from synod.consensus.app import Code, LedgerApp, state_digest
from synod.consensus.signed import Attest
from synod.state.db import PostgresDatabase, SqliteDatabase
from synod.state.transactions import Requeue
from tests.consensus.blocks import random_blocks, to_failed, withdraw_id
from tests.consensus.conftest import COMMITTEE, by_member, postgres_dsn


def replay(app: LedgerApp, blocks: list[list[bytes]]) -> tuple[list[str], list[list[int]]]:
    hashes, codes = [], []
    for height, txs in enumerate(blocks, start=1):
        outcomes, app_hash = app.finalize_block(height, txs)
        app.commit()
        hashes.append(app_hash.hex())
        codes.append([int(o.code) for o in outcomes])
    return hashes, codes


@pytest.fixture
def postgres_app() -> Iterator[LedgerApp | None]:
    dsn = postgres_dsn()
    if dsn is None:
        yield None
        return
    import psycopg

    name = f"synod_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    db = f"{dsn} dbname={name}"
    app = LedgerApp(PostgresDatabase(db), PostgresDatabase(db), COMMITTEE)
    yield app
    app.close()
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def test_replay_gives_the_same_hashes_on_sqlite_and_postgres(
    tmp_path: Path, postgres_app: LedgerApp | None
) -> None:
    requeue = Requeue(withdraw_id("rq"), "spent elsewhere", "forged proof")
    blocks = [
        *random_blocks(seed=13, count=60),
        *to_failed("rq", deposit="0xfeed"),
        [by_member(1, requeue), by_member(2, Attest(requeue.tx_id, "forged"))],
        [by_member(3, Attest(requeue.tx_id, "forged"))],
    ]
    apps = [
        LedgerApp(
            SqliteDatabase(tmp_path / f"{i}.db"), SqliteDatabase(tmp_path / f"{i}.db"), COMMITTEE
        )
        for i in range(2)
    ]
    runs = [replay(app, blocks) for app in apps]
    assert runs[0] == runs[1]
    codes = {c for block in runs[0][1] for c in block}
    assert Code.OK in codes and Code.REJECTED in codes  # the mix exercises both outcomes
    digests = {state_digest(app.reader) for app in apps}
    if postgres_app is not None:
        assert replay(postgres_app, blocks) == runs[0]
        digests.add(state_digest(postgres_app.reader))
    elif os.environ.get("SYNOD_REQUIRE_POSTGRES") == "1":
        pytest.fail("PostgreSQL required")
    assert len(digests) == 1
    assert apps[0].strikes()  # the forged proof was decided identically everywhere
    for app in apps:
        app.close()


def test_a_changed_outcome_changes_every_later_hash(tmp_path: Path) -> None:
    blocks = random_blocks(seed=5, count=12)
    a = LedgerApp(SqliteDatabase(tmp_path / "a.db"), SqliteDatabase(tmp_path / "a.db"), COMMITTEE)
    b = LedgerApp(SqliteDatabase(tmp_path / "b.db"), SqliteDatabase(tmp_path / "b.db"), COMMITTEE)
    first, _ = replay(a, blocks)
    altered = [list(txs) for txs in blocks]
    k = next(i for i, txs in enumerate(altered) if txs)
    altered[k] = altered[k][:-1]  # one transaction fewer in one block
    second, _ = replay(b, altered)
    assert first[:k] == second[:k]
    assert all(x != y for x, y in zip(first[k:], second[k:], strict=True))
    a.close()
    b.close()
