"""An API over a fresh store (SQLite, and PostgreSQL when configured), driven in-process through
the ASGI interface, with one token per role."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synod.api.app import ApiSettings, create_app
from synod.api.auth import Role, TokenStore
from synod.api.webhooks import webhook_router
from synod.chains.bitcoin.address import Network
from synod.runtime.consensus import SoloConsensus
from synod.runtime.destinations import Network as IpNetwork
from synod.runtime.journal import Journal
from synod.runtime.webhooks import Policy, Webhooks
from synod.state.audit import AuditLog
from synod.state.machine import Ledger
from synod.state.webhooks import SecretBox

from ..state.conftest import StoreFactory, new_store, open_db  # noqa: F401  (fixtures)


@dataclass
class Api:
    client: TestClient
    ledger: Ledger
    consensus: SoloConsensus
    tokens: TokenStore
    audit: AuditLog
    secrets: dict[Role, str]
    webhooks: Webhooks

    def headers(self, role: Role = Role.OPERATOR, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}", **extra}

    def snapshot(self) -> Any:
        """Everything the ledger holds (what a refused request must leave as it was)."""
        db = self.ledger.db
        return (
            db.query("SELECT tx_id, seq, kind, body, result FROM applied_tx ORDER BY seq"),
            [w.__dict__ for w in self.ledger.withdrawals()],
            sorted(self.ledger.balances().items()),
        )


def make_api(
    factory: StoreFactory,
    tmp_path: Path,
    settings: ApiSettings | None = None,
    limiter_clock: Callable[[], float] = time.monotonic,
    allow_networks: tuple[IpNetwork, ...] = (),
) -> Iterator[Api]:
    db = factory()()
    ledger = Ledger(db)
    audit = AuditLog(db)
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"), audit)
    tokens = TokenStore(db)
    secrets = {role: tokens.create(role, f"test-{role.value}")[0] for role in Role}
    # A key of its own (a PostgreSQL store has no directory to keep the key file beside).
    box = SecretBox(os.urandom(32))
    webhooks = Webhooks(db, Policy(allow_networks=allow_networks), box=box)
    app = create_app(
        consensus,
        tokens,
        audit,
        settings=settings
        or ApiSettings(btc_network=Network.REGTEST, rate_per_second=1000, burst=1000),
        extra_routers=[partial(webhook_router, webhooks)],
        limiter_clock=limiter_clock,
    )
    with TestClient(app) as client:
        yield Api(client, ledger, consensus, tokens, audit, secrets, webhooks)
    webhooks.close()
    consensus.journal.close()
    db.close()


@pytest.fixture
def api(new_store: StoreFactory, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    yield from make_api(new_store, tmp_path)
