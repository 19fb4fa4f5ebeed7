"""The API's bound on a request body: a Content-Length must be ASCII digits, and no larger
than `ApiSettings.max_body_bytes`; anything else is a 413 problem, never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from synod.api.app import ApiSettings, create_app
from synod.api.auth import TokenStore
from synod.chains.bitcoin.address import Network
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    db = SqliteDatabase(tmp_path / "ledger.db")
    audit = AuditLog(db)
    consensus = SoloConsensus(Ledger(db), Journal(tmp_path / "journal.db"), audit)
    settings = ApiSettings(btc_network=Network.REGTEST, max_body_bytes=1024)
    with TestClient(create_app(consensus, TokenStore(db), audit, settings=settings)) as c:
        yield c
    consensus.journal.close()
    db.close()


# Starlette reads header bytes as Latin-1: these are the digits a client can put there
@pytest.mark.parametrize("length", ["²", "³", "1²", "¹0"])
def test_a_content_length_of_other_digits_is_refused(client: TestClient, length: str) -> None:
    headers = {b"Content-Length": length.encode("latin-1"), b"Transfer-Encoding": b"chunked"}
    r = client.post("/v1/withdrawals", content=b"{}", headers=headers)
    assert r.status_code == 413 and "send a Content-Length" in r.json()["detail"]


def test_a_content_length_above_the_bound_is_refused(client: TestClient) -> None:
    r = client.post("/v1/withdrawals", content=b"{}", headers={"Content-Length": "1025"})
    assert r.status_code == 413 and "at most 1024 bytes" in r.json()["detail"]
