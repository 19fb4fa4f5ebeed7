"""Webhooks against a real HTTP receiver on 127.0.0.1: events derived from the ledger's log,
signatures checked independently with the standard library, retries with backoff after
failures, a receiver that is down, and nothing lost across a restart of the deliverer."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from synod.runtime.webhooks import SIGNATURE_HEADER, Policy, Webhooks
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, Reserve, WithdrawRequest
from synod.state.webhooks import DeliveryStatus, EventKind, SubscriptionError

SECRET = "s3cret-for-tests-only-0123456789"
OUTPOINT = "ab" * 32 + ":0"


@dataclass
class Receiver:
    """A tiny HTTP server recording what it got; answers `script` status codes in order
    (then 200)."""

    script: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k: v for k, v in self.headers.items()}, body))
            code = state.script.pop(0) if state.script else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def verify(headers: dict[str, str], body: bytes, secret: str, now: float) -> dict[str, Any]:
    """What a receiver does, written against the standard library only."""
    parts = dict(p.split("=", 1) for p in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(expected.hexdigest(), parts["v1"])
    assert abs(int(parts["t"]) - now) <= 300
    event: dict[str, Any] = json.loads(body)
    return event


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    try:
        yield ledger
    finally:
        ledger.db.close()


def hooks(ledger: Ledger, clock: Clock, attempts: int = 4) -> Webhooks:
    # A generous request timeout: on a loaded machine a slow answer must not turn into a retry.
    return Webhooks(ledger.db, Policy(attempts, 1.0, 8.0, 30.0), clock)


def test_events_are_signed_and_filtered(ledger: Ledger, receiver: Receiver) -> None:
    clock = Clock()
    webhooks = hooks(ledger, clock)
    everything = webhooks.subscribe(receiver.url, [e.value for e in EventKind], SECRET)
    deposits_only = webhooks.subscribe(receiver.url + "?d", ["deposit.credited"], SECRET[::-1])
    assert SECRET not in repr(everything)
    listed = {s.sub_id: s for s in webhooks.list()}
    assert set(listed) == {everything.sub_id, deposits_only.sub_id}
    assert all(s.secret == "" and s.active for s in listed.values())
    ledger.apply(DepositCredit("btc", "BTC", 90_000, OUTPOINT, 7, "51" * 34))
    queued = ledger.apply(WithdrawRequest("req-1", "btc", "BTC", "bcrt1qdest", 10_000))
    wid = queued.result["withdraw_id"]
    ledger.apply(Reserve(wid))
    assert webhooks.step() == 4  # 3 events to one, 1 to the other
    assert webhooks.step() == 0  # delivered once

    by_path: dict[str, list[dict[str, Any]]] = {}
    for headers, body in receiver.received:  # each verifies under its subscription's secret
        matches = []
        for candidate in (SECRET, SECRET[::-1]):
            try:
                matches.append((candidate, verify(headers, body, candidate, clock.now)))
            except AssertionError:
                continue
        [(secret, event)] = matches
        by_path.setdefault("all" if secret == SECRET else "d", []).append(event)
    assert [e["type"] for e in by_path["all"]] == [
        "deposit.credited",
        "withdrawal.state_changed",
        "withdrawal.state_changed",
    ]
    assert [e["data"].get("state") for e in by_path["all"][1:]] == ["QUEUED", "RESERVED"]
    assert by_path["all"][1]["data"]["request_id"] == "req-1"
    assert by_path["d"][0]["data"] == {
        "chain": "btc",
        "asset": "BTC",
        "amount": "90000",
        "ref": OUTPOINT,
        "height": 7,
    }
    log = webhooks.attempts(deposits_only.sub_id)
    assert [(a.attempt, a.status_code, a.error) for a in log] == [(1, 200, None)]

    # A tampered body or another secret does not verify.
    headers, body = receiver.received[0]
    with pytest.raises(AssertionError):
        verify(headers, body.replace(b"90000", b"90001"), SECRET, clock.now)
    webhooks.close()


def test_retried_with_backoff_until_the_receiver_answers(
    ledger: Ledger, receiver: Receiver
) -> None:
    clock = Clock()
    webhooks = hooks(ledger, clock)
    sub = webhooks.subscribe(receiver.url, ["deposit.credited"], SECRET)
    ledger.apply(DepositCredit("eth", "ETH", 5, "0xabc:0", 3))
    receiver.script = [500, 503]
    assert webhooks.step() == 0  # 500
    assert webhooks.step() == 0  # not due yet: nothing sent
    assert len(receiver.received) == 1
    clock.now += 1.0
    assert webhooks.step() == 0  # 503
    clock.now += 1.5
    assert webhooks.step() == 0  # the second delay is 2 s
    assert len(receiver.received) == 2
    clock.now += 0.5
    assert webhooks.step() == 1
    ids = {json.loads(body)["id"] for _, body in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1  # the same event, retried
    log = sorted(webhooks.attempts(sub.sub_id), key=lambda a: a.attempt)
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 503), (3, 200)]
    assert [a.error for a in log] == ["HTTP 500", "HTTP 503", None]
    [delivery] = webhooks.deliveries(sub.sub_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
    webhooks.close()


def test_receiver_down_backs_off_then_gives_up(ledger: Ledger) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = Clock()
    webhooks = hooks(ledger, clock, attempts=3)
    sub = webhooks.subscribe(f"http://127.0.0.1:{port}/", ["deposit.credited"], SECRET)
    ledger.apply(DepositCredit("eth", "ETH", 5, "0xdef:0", 3))
    start = clock.now
    for _ in range(20):
        webhooks.step()
        clock.now += 0.5
    log = sorted(webhooks.attempts(sub.sub_id), key=lambda a: a.attempt)
    assert [a.at - start for a in log] == [0.0, 1.0, 3.0]  # 1 s, then 2 s
    assert all(a.status_code is None and "ConnectError" in (a.error or "") for a in log)
    [delivery] = webhooks.deliveries(sub.sub_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    webhooks.close()


def test_events_applied_while_the_deliverer_was_down_are_delivered(
    ledger: Ledger, receiver: Receiver
) -> None:
    clock = Clock()
    webhooks = hooks(ledger, clock)
    sub = webhooks.subscribe(receiver.url, ["withdrawal.state_changed"], SECRET)
    webhooks.close()
    ledger.apply(WithdrawRequest("req-9", "eth", "ETH", "0x" + "11" * 20, 1))  # nobody running
    restarted = hooks(ledger, clock)
    assert restarted.step() == 1
    assert restarted.step() == 0
    assert restarted.store.fill_outbox(clock.now) == 0  # the cursor moved with the queue
    assert len(receiver.received) == 1
    assert restarted.unsubscribe(sub.sub_id)
    ledger.apply(WithdrawRequest("req-10", "eth", "ETH", "0x" + "11" * 20, 1))
    assert restarted.step() == 0 and len(receiver.received) == 1
    restarted.close()


def test_bad_subscriptions_are_refused(ledger: Ledger) -> None:
    webhooks = hooks(ledger, Clock())
    for url, kinds in (
        ("ftp://example.org/", ["deposit.credited"]),
        ("http:///nohost", ["deposit.credited"]),
        ("http://127.0.0.1/", ["deposit.lost"]),
        ("http://127.0.0.1/", []),
    ):
        with pytest.raises(SubscriptionError):
            webhooks.subscribe(url, kinds)
    assert webhooks.list() == []
    webhooks.close()


def test_the_delivery_loop_runs_in_its_own_thread(tmp_path: Path, receiver: Receiver) -> None:
    """The loop on its own connection to the ledger's database, as a node runs it."""
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    webhooks = Webhooks(SqliteDatabase(tmp_path / "ledger.db"), Policy(timeout_s=2.0))
    webhooks.subscribe(receiver.url, ["deposit.credited"], SECRET)
    stop = threading.Event()
    loop = threading.Thread(target=webhooks.run, args=(stop, 0.01))
    loop.start()
    try:
        ledger.apply(DepositCredit("sol", "SOL", 9, "sig:0", 4))
        for _ in range(1000):
            if receiver.received:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        loop.join()
    [(headers, body)] = receiver.received
    assert verify(headers, body, SECRET, time.time())["data"]["ref"] == "sig:0"
    webhooks.close()
    webhooks.store.db.close()
    ledger.db.close()
