"""Both stores for the state tests: SQLite in temporary files, and PostgreSQL in fresh databases
created for the test (DSN from SYNOD_TEST_POSTGRES_DSN; `make test` and CI set it up)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from synod.state.db import PostgresDatabase, SqliteDatabase

Opener = Callable[[], SqliteDatabase | PostgresDatabase]
"""Opens (or re-opens, after a simulated crash) one particular store."""
StoreFactory = Callable[[], Opener]
"""Makes a new, empty store and returns its opener."""


def postgres_dsn() -> str | None:
    dsn = os.environ.get("SYNOD_TEST_POSTGRES_DSN", "").strip()
    if dsn:
        return dsn
    if os.environ.get("SYNOD_REQUIRE_POSTGRES") == "1":
        pytest.fail("SYNOD_REQUIRE_POSTGRES=1 but SYNOD_TEST_POSTGRES_DSN is not set")
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "sqlite":
        counter = iter(range(10**9))

        def sqlite_store() -> Opener:
            path = tmp_path / f"ledger-{next(counter)}.db"
            return lambda: SqliteDatabase(path)

        yield sqlite_store
        return
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PostgreSQL not configured (set SYNOD_TEST_POSTGRES_DSN)")
    import psycopg

    created: list[str] = []

    def postgres_store() -> Opener:
        name = f"synod_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        created.append(name)
        return lambda: PostgresDatabase(f"{dsn} dbname={name}")

    yield postgres_store
    with psycopg.connect(dsn, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def open_db(new_store: StoreFactory) -> Opener:
    return new_store()
