"""The deposit watchers' cursor store and the webhook store on SQLite and PostgreSQL: their own
migrations beside the ledger's, and the same answers on both."""

from __future__ import annotations

import os

from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest
from synod.state.watch_store import Cursor, WatchStore
from synod.state.webhooks import DeliveryStatus, EventKind, SecretBox, WebhookStore

from .conftest import Opener


def test_watch_store(open_db: Opener) -> None:
    db = open_db()
    store = WatchStore(db)
    assert store.cursor("btc") is None
    for height in range(10, 20):
        store.advance("btc", height, f"h{height}", keep=5)
    store.advance("eth", 3, "e3", keep=5)
    assert store.cursor("btc") == Cursor(19, "h19")
    assert [c.height for c in store.recorded("btc")] == [19, 18, 17, 16, 15]
    store.rewind("btc", 16)
    assert store.cursor("btc") == Cursor(16, "h16")
    store.advance("btc", 17, "other", keep=5)  # a new branch replaces what was above
    db.close()
    reopened = WatchStore(open_db())  # migrations are not re-applied
    assert reopened.cursor("btc") == Cursor(17, "other")
    assert reopened.cursor("eth") == Cursor(3, "e3")
    reopened.db.close()


def test_webhook_outbox_follows_the_ledger_log(open_db: Opener) -> None:
    ledger = Ledger(open_db())
    ledger.apply(DepositCredit("eth", "ETH", 5, "0xold:0", 1))  # before any subscription
    store = WebhookStore(ledger.db, SecretBox(os.urandom(32)))
    sub = store.subscribe("http://127.0.0.1:9/x", ["deposit.credited"], "k" * 32)
    assert store.secret(sub.sub_id) == "k" * 32  # sealed in the row, opened by the box
    ledger.apply(DepositCredit("eth", "ETH", 7, "0xnew:0", 2))
    ledger.apply(WithdrawRequest("r-1", "eth", "ETH", "0x" + "22" * 20, 1))
    assert store.fill_outbox(now=100.0) == 1
    assert store.fill_outbox(now=100.0) == 0
    assert store.due(now=100.0, limit=10, skip=[sub.sub_id]) == []  # its job is under way
    [due] = store.due(now=100.0, limit=10)
    assert due.kind is EventKind.DEPOSIT_CREDITED and '"0xnew:0"' in due.body
    store.record_attempt(due, 100.0, 500, "HTTP 500", DeliveryStatus.PENDING, 102.0)
    assert store.due(now=101.0, limit=10) == []
    [again] = store.due(now=102.0, limit=10)
    store.record_attempt(again, 102.0, 204, None, DeliveryStatus.DELIVERED, 102.0)
    log = store.attempts(sub.sub_id)
    assert [(a.attempt, a.status_code, a.error) for a in log] == [
        (2, 204, None),
        (1, 500, "HTTP 500"),
    ]
    [delivery] = store.deliveries(sub.sub_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert store.unsubscribe(sub.sub_id) and not store.subscriptions(active_only=True)
    ledger.db.close()
