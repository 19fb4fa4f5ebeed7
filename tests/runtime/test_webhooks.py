"""Webhooks against real HTTP receivers on 127.0.0.1 (a network allowed explicitly): events
derived from the ledger's log, signatures checked independently with the standard library,
retries with backoff after failures, a receiver that is down, nothing lost across a restart of
the deliverer; destinations refused unless allowed, at subscription and again at delivery;
secrets sealed at rest; a stalled receiver that holds up nobody else."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from synod import metrics
from synod.runtime.destinations import DestinationError
from synod.runtime.webhooks import (
    SECRET_KEY_ENV,
    SIGNATURE_HEADER,
    Policy,
    WebhookKeyError,
    Webhooks,
    load_secret_key,
)
from synod.state.db import SqliteDatabase, migrate
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, Reserve, WithdrawRequest
from synod.state.webhooks import (
    WEBHOOK_MIGRATIONS,
    DeliveryStatus,
    EventKind,
    SecretBox,
    SecretKeyError,
    SubscriptionError,
)

SECRET = "s3cret-for-tests-only-0123456789"
OUTPOINT = "ab" * 32 + ":0"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
WAIT_S = 60.0  # a bound on every wait for another thread: never reached when things work


@dataclass
class Receiver:
    """A tiny HTTP server recording what it got; answers `script` status codes in order
    (then 200). `entered` is set by each request; with `hold` given, a request then waits
    for it (a receiver that stalls)."""

    script: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    port: int = 0
    entered: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)  # after `hold`, recorded
    hold: threading.Event | None = None


@contextmanager
def serving(state: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.entered.set()
            if state.hold is not None:
                state.hold.wait(WAIT_S)
            state.received.append(({k: v for k, v in self.headers.items()}, body))
            state.arrived.set()
            code = state.script.pop(0) if state.script else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}/hook"
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as state:
        yield state


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Makes receivers (`receivers(hold=event)` for one that stalls until the event)."""
    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(serving(Receiver(**kw)))


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


def hooks(ledger: Ledger, clock: Clock, attempts: int = 4, **kw: Any) -> Webhooks:
    # A generous request timeout: on a loaded machine a slow answer must not turn into a retry.
    # The receivers are on loopback: that network is allowed explicitly.
    return Webhooks(
        ledger.db, Policy(attempts, 1.0, 8.0, 30.0, allow_networks=LOOPBACK), clock, **kw
    )


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
    webhooks = Webhooks(
        SqliteDatabase(tmp_path / "ledger.db"), Policy(timeout_s=2.0, allow_networks=LOOPBACK)
    )
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


# ---------------------------------------------------------------------- destinations


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A name service the test controls (a name not in `table` does not resolve)."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


REFUSED = [
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.9/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::7]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[2002:c0a8:101::1]/", "private"),  # 6to4 around 192.168.1.1
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "private"),  # reserved for future use (Python counts it private)
    ("http://100.64.0.1/", "not globally routable"),
    ("http://inside.test/", "private"),  # a name: every address it resolves to is checked
    ("http://mixed.test/", "loopback"),
]
NAMES = {"inside.test": ["10.9.9.9"], "mixed.test": ["93.184.216.34", "127.0.0.2"]}


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_non_public_destinations_are_refused_unless_allowed(
    ledger: Ledger, url: str, reason: str
) -> None:
    strict = Webhooks(ledger.db, Policy(), resolve=resolver(NAMES))
    with pytest.raises(DestinationError, match=f"refused \\({reason}\\)"):
        strict.subscribe(url, ["deposit.credited"])
    assert strict.list() == []
    strict.close()

    everything = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/0", "::/0"))
    allowing = Webhooks(ledger.db, Policy(allow_networks=everything), resolve=resolver(NAMES))
    assert allowing.subscribe(url, ["deposit.credited"]).url == url
    allowing.close()


def test_public_and_unresolved_hosts_are_accepted(ledger: Ledger) -> None:
    """A public address passes; a name that does not resolve yet is checked at delivery."""
    webhooks = Webhooks(ledger.db, Policy(), resolve=resolver({"hooks.test": ["93.184.216.34"]}))
    for url in (
        "https://hooks.test/x",
        "https://8.8.8.8/x",
        "https://[2606:4700::1]/",
        "https://later.test/",
    ):
        webhooks.subscribe(url, ["deposit.credited"])
    assert len(webhooks.list()) == 4
    webhooks.close()


def refused_count() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "synod_webhook_attempts_total", {"outcome": "refused"}
    )
    return value or 0.0


def test_a_host_resolving_elsewhere_later_is_refused_at_delivery(
    ledger: Ledger, receiver: Receiver
) -> None:
    """The name is checked again before each delivery; the request goes to the address that was
    checked (the name itself is unknown to the system's resolver), and a forbidden one is
    recorded as a failed attempt and counted, with nothing sent."""
    names = {"hooks.test": ["127.0.0.1"]}
    clock = Clock()
    webhooks = hooks(ledger, clock, resolve=resolver(names))
    sub = webhooks.subscribe(
        f"http://hooks.test:{receiver.port}/hook", ["deposit.credited"], SECRET
    )
    ledger.apply(DepositCredit("eth", "ETH", 5, "0x01:0", 3))
    assert webhooks.step() == 1
    [(headers, body)] = receiver.received
    assert headers["Host"] == f"hooks.test:{receiver.port}"
    verify(headers, body, SECRET, clock.now)

    before = refused_count()
    for now_resolves in (["10.0.0.7"], ["127.0.0.1", "169.254.1.1"]):
        names["hooks.test"] = now_resolves
        ledger.apply(DepositCredit("eth", "ETH", 5, f"0x{len(now_resolves)}:1", 3))
        clock.now += 60.0
        assert webhooks.step() == 0
    assert len(receiver.received) == 1  # nothing more was sent
    assert refused_count() == before + 2
    log = sorted(webhooks.attempts(sub.sub_id), key=lambda a: a.at)
    assert [a.status_code for a in log] == [200, None, None]
    assert "10.0.0.7, refused (private)" in (log[1].error or "")
    assert "169.254.1.1, refused (link-local)" in (log[2].error or "")
    pending = [d for d in webhooks.deliveries(sub.sub_id) if d.status == DeliveryStatus.PENDING]
    assert len(pending) == 2  # retried later, in case the name points back

    names["hooks.test"] = ["127.0.0.1"]
    clock.now += 60.0
    assert webhooks.step() == 2 and len(receiver.received) == 3
    webhooks.close()


# ---------------------------------------------------------------------- secrets at rest


def test_secrets_are_sealed_at_rest(tmp_path: Path, ledger: Ledger, receiver: Receiver) -> None:
    clock = Clock()
    webhooks = hooks(ledger, clock)
    key_file = tmp_path / "ledger.db.webhook-key"  # created on first use, beside the store
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sub = webhooks.subscribe(receiver.url, ["deposit.credited"], SECRET)
    other = webhooks.subscribe(receiver.url + "?2", ["deposit.credited"], SECRET[::-1])
    dump = json.dumps(ledger.db.query("SELECT * FROM webhook_subscriptions"))
    assert SECRET not in dump and SECRET.encode().hex() not in dump
    assert SECRET not in repr(sub) and "key" not in repr(webhooks.store.box)

    # The sealed secret is bound to its subscription: moved to another, it does not open.
    with ledger.db.transaction():
        ledger.db.execute(
            "UPDATE webhook_subscriptions SET sealed = "
            "(SELECT sealed FROM webhook_subscriptions WHERE sub_id = ?) WHERE sub_id = ?",
            (sub.sub_id, other.sub_id),
        )
    with pytest.raises(SecretKeyError, match=other.sub_id):
        webhooks.store.secret(other.sub_id)
    assert webhooks.store.secret(sub.sub_id) == SECRET

    ledger.apply(DepositCredit("eth", "ETH", 7, "0x07:0", 2))
    webhooks.close()
    reopened = hooks(ledger, clock)  # the same key file: the secret still signs
    assert reopened.step() == 1
    [(headers, body)] = receiver.received
    verify(headers, body, SECRET, clock.now)
    reopened.close()


def test_plaintext_secrets_from_before_are_sealed_on_open(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = SqliteDatabase(tmp_path / "old.db")
    migrate(db, WEBHOOK_MIGRATIONS[:1], "webhook_schema_version")  # the schema before sealing
    with db.transaction():
        db.execute(
            "INSERT INTO webhook_subscriptions (sub_id, url, secret, kinds, active, after_seq) "
            "VALUES ('sub_old', ?, ?, 'deposit.credited', 1, 0)",
            (receiver.url, SECRET),
        )
    ledger = Ledger(db)
    clock = Clock()
    webhooks = hooks(ledger, clock)
    assert SECRET not in json.dumps(db.query("SELECT * FROM webhook_subscriptions"))
    assert webhooks.store.seal_plaintext() == 0  # done once
    ledger.apply(DepositCredit("sol", "SOL", 1, "sig:9", 1))
    assert webhooks.step() == 1
    [(headers, body)] = receiver.received
    verify(headers, body, SECRET, clock.now)
    webhooks.close()
    db.close()


def test_a_wrong_key_is_a_logged_failed_attempt_not_a_crash(
    ledger: Ledger, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    right = hooks(ledger, clock, attempts=2)
    sub = right.subscribe(receiver.url, ["deposit.credited"], SECRET)
    right.close()
    wrong = hooks(ledger, clock, attempts=2, box=SecretBox(os.urandom(32)))
    ledger.apply(DepositCredit("eth", "ETH", 5, "0xabc:0", 3))
    stop = threading.Event()
    loop = threading.Thread(target=wrong.run, args=(stop, 0.01))
    with caplog.at_level(logging.WARNING, logger="synod.runtime.webhooks"):
        loop.start()
        try:
            for _ in range(int(WAIT_S * 100)):  # the loop goes on after the failed attempt
                clock.now += 1.0
                if [d.status for d in wrong.deliveries(sub.sub_id)] == [DeliveryStatus.FAILED]:
                    break
                stop.wait(0.01)
        finally:
            stop.set()
            loop.join()
    assert loop.is_alive() is False and receiver.received == []
    log = wrong.attempts(sub.sub_id)
    assert len(log) == 2 and all(
        "does not open under the webhook key" in (a.error or "") for a in log
    )
    assert "failed for good" in caplog.text and "does not open" in caplog.text
    assert SECRET not in caplog.text and all(SECRET not in (a.error or "") for a in log)
    wrong.close()


def test_the_key_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert load_secret_key(tmp_path / "none", {SECRET_KEY_ENV: key.hex()}) == key
    assert not (tmp_path / "none").exists()
    with pytest.raises(WebhookKeyError, match=SECRET_KEY_ENV) as bad:
        load_secret_key(tmp_path / "none", {SECRET_KEY_ENV: "00" * 31})
    assert "00" * 31 not in str(bad.value)
    made = load_secret_key(tmp_path / "k", {})
    assert load_secret_key(tmp_path / "k", {}) == made  # created once, then read
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(WebhookKeyError, match="chmod 600"):
        load_secret_key(tmp_path / "k", {})
    (tmp_path / "k").chmod(0o600)
    (tmp_path / "k").write_text("not a key\n")
    with pytest.raises(WebhookKeyError, match="64 hex digits"):
        load_secret_key(tmp_path / "k", {})


# ---------------------------------------------------------------------- the delivery pool


def test_a_stalled_receiver_does_not_hold_up_the_others(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """The loop on its own connection; the slow receiver answers only when the test says so,
    long after the fast one got an event applied while the slow one was stalled."""
    release = threading.Event()
    slow, fast = receivers(hold=release), receivers()
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    policy = Policy(timeout_s=WAIT_S * 2, workers=2, queue_size=0, allow_networks=LOOPBACK)
    webhooks = Webhooks(SqliteDatabase(tmp_path / "ledger.db"), policy)
    webhooks.subscribe(slow.url, ["deposit.credited"], SECRET)
    webhooks.subscribe(fast.url, ["withdrawal.state_changed"], SECRET)
    stop = threading.Event()
    loop = threading.Thread(target=webhooks.run, args=(stop, 0.01))
    loop.start()
    try:
        ledger.apply(DepositCredit("sol", "SOL", 9, "sig:1", 4))
        assert slow.entered.wait(WAIT_S)  # the slow receiver holds its request
        ledger.apply(WithdrawRequest("req-1", "eth", "ETH", "0x" + "11" * 20, 1))
        assert fast.arrived.wait(WAIT_S)
        assert slow.received == [] and not release.is_set()  # still stalled meanwhile
        [(_, body)] = fast.received
        assert json.loads(body)["data"]["request_id"] == "req-1"
        release.set()
        assert slow.arrived.wait(WAIT_S)
    finally:
        release.set()
        stop.set()
        loop.join()
        webhooks.close()
    assert [json.loads(b)["type"] for _, b in slow.received] == ["deposit.credited"]
    webhooks.store.db.close()
    ledger.db.close()


def test_the_pool_is_bounded(ledger: Ledger, receivers: Callable[..., Receiver]) -> None:
    """With one worker and no queue, a stalled job claims the only slot: the next pass hands
    out nothing, and the other subscription's delivery waits in the outbox, unattempted."""
    release = threading.Event()
    slow, fast = receivers(hold=release), receivers()
    webhooks = Webhooks(
        ledger.db, Policy(timeout_s=WAIT_S * 2, workers=1, queue_size=0, allow_networks=LOOPBACK)
    )
    webhooks.subscribe(slow.url, ["deposit.credited"], SECRET)
    later = webhooks.subscribe(fast.url, ["withdrawal.state_changed"], SECRET)
    ledger.apply(DepositCredit("sol", "SOL", 9, "sig:1", 4))  # due first
    ledger.apply(DepositCredit("sol", "SOL", 9, "sig:2", 4))
    ledger.apply(WithdrawRequest("req-1", "eth", "ETH", "0x" + "11" * 20, 1))
    [job] = webhooks.dispatch()
    try:
        assert slow.entered.wait(WAIT_S)
        assert webhooks.dispatch() == []
        [waiting] = webhooks.deliveries(later.sub_id)
        assert (waiting.status, waiting.attempts) == (DeliveryStatus.PENDING, 0)
        assert fast.received == []
    finally:
        release.set()
    assert job.result(WAIT_S) == 2  # one job: the subscription's due deliveries in order
    assert webhooks.step() == 1 and len(fast.received) == 1
    webhooks.close()
