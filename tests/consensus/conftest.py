"""A four-member committee with deterministic test identities, an operator key, and ledger
applications over fresh stores (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.consensus.app import LedgerApp
from synod.consensus.committee import Committee
from synod.consensus.signed import SignedTx
from synod.protocols.envelope import Identity
from synod.state.transactions import Tx
from tests.state.conftest import StoreFactory, new_store, postgres_dsn  # noqa: F401

CHAIN_ID = "synod-test"
IDENTITIES = {i: Identity.from_seed(i, b"consensus-tests") for i in range(1, 5)}
OPERATOR = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test operator").digest())
OUTSIDER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"not a member").digest())


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


COMMITTEE = Committee(
    CHAIN_ID,
    {i: raw_public(ident.sign_secret) for i, ident in IDENTITIES.items()},
    {"api": raw_public(OPERATOR)},
)


def by_member(member: int, tx: Tx) -> bytes:
    return SignedTx.sign(tx, f"member:{member}", IDENTITIES[member].sign_secret, CHAIN_ID).encode()


WITNESSES = (1, 2, 3)
"""A quorum of the four (2f + 1 = 3)."""


def witnessed(tx: Tx, members: tuple[int, ...] = WITNESSES) -> list[bytes]:
    """The same fact from each of `members`: what a witnessed kind (a deposit, a confirmation)
    needs before the ledger acts on it."""
    return [by_member(m, tx) for m in members]


def by_operator(tx: Tx) -> bytes:
    return SignedTx.sign(tx, "operator:api", OPERATOR, CHAIN_ID).encode()


AppFactory = Callable[[], tuple[LedgerApp, Callable[[], LedgerApp]]]
"""A new application on a new, empty store, and how to reopen it (after a crash)."""


@pytest.fixture
def new_app(new_store: StoreFactory) -> Iterator[AppFactory]:  # noqa: F811
    apps: list[LedgerApp] = []

    def make() -> tuple[LedgerApp, Callable[[], LedgerApp]]:
        opener = new_store()

        def reopen() -> LedgerApp:
            app = LedgerApp(opener(), opener(), COMMITTEE)
            apps.append(app)
            return app

        return reopen(), reopen

    yield make
    for app in apps:
        with contextlib.suppress(Exception):  # some were closed by the test (a crash)
            app.close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[LedgerApp]:
    from synod.state.db import SqliteDatabase

    app = LedgerApp(SqliteDatabase(tmp_path / "l.db"), SqliteDatabase(tmp_path / "l.db"), COMMITTEE)
    yield app
    app.close()
