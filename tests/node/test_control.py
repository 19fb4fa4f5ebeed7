"""The control service over real gRPC on 127.0.0.1 (insecure channel: TLS comes with the node
process), driving five `SignerNode`s linked in process: DKGs (BIP340 and CGGMP) begun and
polled over the service, then the withdraw worker's `NodeSigner` signing several withdrawals
at once with one member down, every member checking the message against the withdrawal's
recorded template in its own ledger view. Signatures are verified with libsecp256k1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import coincurve
import grpc
import pytest

from synod.crypto import frost
from synod.node import KeyRing, MonotonicClock, SessionStatus, SignerNode
from synod.node.control import MAX_WAITERS, ControlClient, ControlError, add_control_service
from synod.node.grpc_transport import CONTROL_THREADS
from synod.node.runner import NodeRunner
from synod.node.templates import SignContext, signing_session_id
from synod.protocols.envelope import Identity
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.node_signer import NodeSigner, RecordedTemplates
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.machine import CONFIRMED, Ledger, Withdrawal
from synod.state.session_store import SessionStore
from tests.fixtures import stored_aux
from tests.node.loopback import LoopbackNet
from tests.runtime import scenario
from tests.runtime.fakes import FakeChain

MEMBERS = (1, 2, 3, 4, 5)
POLL_S = 0.05


def message_for(w: Withdrawal) -> bytes:
    assert w.template is not None
    return hashlib.sha256(b"sighash|" + w.template.encode()).digest()


MESSAGES = {"btc": message_for, "eth": message_for}


@dataclass
class Committee:
    net: LoopbackNet
    runners: dict[int, NodeRunner]
    servers: dict[int, grpc.Server]
    clients: dict[int, ControlClient]
    ledger: Ledger

    def stop_member(self, member: int) -> None:
        self.net.down.add(member)
        self.servers[member].stop(grace=None).wait()
        self.runners[member].stop()


def wait_for(condition, what: str, limit: int = 600) -> None:  # type: ignore[no-untyped-def]
    for _ in range(limit):
        if condition():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def committee(tmp_path: Path) -> Iterator[Committee]:
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    identities = {i: Identity.generate(i) for i in MEMBERS}
    directory = {i: x.public for i, x in identities.items()}
    net = LoopbackNet()
    aux = stored_aux(len(MEMBERS))  # TEST-ONLY aux info (the real protocol takes minutes)
    runners, servers, clients = {}, {}, {}
    for i in MEMBERS:
        store = SessionStore(tmp_path / f"node-{i}.db", hashlib.sha256(b"k%d" % i).digest())
        node = SignerNode(identities[i], directory, 1, net.transport(i), store, KeyRing())
        view = Ledger(SqliteDatabase(tmp_path / "ledger.db"))  # the member's own ledger view
        runners[i] = NodeRunner(
            node,
            MonotonicClock(),
            RecordedTemplates.derived(view, MESSAGES),
            aux[i - 1],
            operator_signing=False,
        )
        net.runners[i] = runners[i]
        runners[i].start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=CONTROL_THREADS))
        add_control_service(server, runners[i])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers[i] = server
        clients[i] = ControlClient(f"127.0.0.1:{port}", None)
    net.start()
    yield Committee(net, runners, servers, clients, ledger)
    net.stop()
    for i in MEMBERS:
        clients[i].close()
        servers[i].stop(grace=None).wait()
        runners[i].stop()


def run_dkg(c: Committee, key_id: str, scheme: str, threshold: int) -> bytes:
    sid = hashlib.sha256(f"dkg/{key_id}".encode()).digest()
    for client in c.clients.values():
        client.start_dkg(key_id, sid, scheme, list(MEMBERS), threshold, timeout=60.0)

    def finished() -> bool:
        return all(
            cl.get_result(sid).status is not SessionStatus.RUNNING for cl in c.clients.values()
        )

    wait_for(finished, f"{scheme} key generation", limit=2400)
    results = [cl.get_result(sid) for cl in c.clients.values()]
    assert all(r.status is SessionStatus.DONE for r in results), [r.reason for r in results]
    keys = {r.public_key for r in results}
    assert len(keys) == 1
    key = keys.pop()
    assert key is not None
    return key


def test_dkg_status_and_refusals_over_the_control_service(committee: Committee) -> None:
    group = run_dkg(committee, "btc-key", "bip340", 3)
    status = committee.clients[2].status()
    assert status["member_id"] == 2 and status["key_ids"] == ["btc-key"]
    public = status["keys"]["btc-key"]  # the public side, as the member's runtime reads it
    assert (public.scheme, public.public_key) == ("bip340", group)
    assert public.output_key is not None and len(public.output_key) == 32
    assert public.verifying_key == public.output_key
    client = committee.clients[1]
    with pytest.raises(ControlError, match=r"INVALID_ARGUMENT.*threshold"):
        client.start_dkg("k2", b"s" * 32, "bip340", [1, 2, 3], 1)
    with pytest.raises(ControlError, match=r"FAILED_PRECONDITION.*already exists"):
        client.start_dkg("btc-key", b"t" * 32, "bip340", [1, 2, 3], 2)
    with pytest.raises(ControlError, match="NOT_FOUND"):
        client.get_result(b"unknown session")
    with pytest.raises(ControlError, match="PERMISSION_DENIED"):
        client.start_sign("btc-key", b"u" * 32, "bip340", b"m" * 32)  # no ledger record
    with pytest.raises(ControlError, match=r"INVALID_ARGUMENT.*message"):
        client.start_sign("btc-key", b"u" * 32, "ecdsa", b"short")


def test_a_member_refuses_a_message_that_is_not_the_recorded_template(
    committee: Committee,
) -> None:
    run_dkg(committee, "btc-key", "bip340", 3)
    context = SignContext("no-such-withdrawal", "session", 0)
    sid = signing_session_id("session", 0)
    for client in committee.clients.values():
        client.start_sign("btc-key", sid, "bip340", b"m" * 32, context, 1.0, timeout=2.0)
    wait_for(
        lambda: all(
            c.get_result(sid).status is not SessionStatus.RUNNING
            for c in committee.clients.values()
        ),
        "the refused session to end everywhere",
    )
    for client in committee.clients.values():
        result = client.get_result(sid)
        assert result.status is SessionStatus.FAILED and result.signature is None
        assert result.reason == "timeout: template_mismatch"
    for runner in committee.runners.values():
        rows = runner.call(lambda node, _now: node.nonces.raw_nonce_rows())  # type: ignore[attr-defined]
        assert rows == []


def test_get_result_waits_for_the_session_to_end_within_bounds(committee: Committee) -> None:
    run_dkg(committee, "btc-key", "bip340", 3)
    client, runner = committee.clients[1], committee.runners[1]
    # A session no member will sign (no recorded template): it ends at its 2 s timeout.
    context = SignContext("no-such-withdrawal", "session", 0)
    sid = signing_session_id("session", 0)
    client.start_sign("btc-key", sid, "bip340", b"m" * 32, context, 1.0, timeout=2.0)
    assert client.get_result(sid).status is SessionStatus.RUNNING
    assert client.get_result(sid, wait=0.05).status is SessionStatus.RUNNING  # wait ran out
    ended = client.get_result(sid, wait=30.0)  # answered when the session ends
    assert ended.status is SessionStatus.FAILED and ended.reason == "timeout: template_mismatch"
    assert client.get_result(sid, wait=30.0).status is SessionStatus.FAILED  # ended: at once
    with pytest.raises(ControlError, match="NOT_FOUND"):
        client.get_result(b"unknown session", wait=30.0)
    for bad in (-1.0, float("nan"), float("inf"), 30.5):
        with pytest.raises(ControlError, match=r"INVALID_ARGUMENT.*wait_s"):
            client.get_result(sid, wait=bad)

    # At most MAX_WAITERS callers wait at once; the next one is answered at once.
    context = SignContext("no-such-withdrawal", "session", 1)
    sid = signing_session_id("session", 1)
    client.start_sign("btc-key", sid, "bip340", b"m" * 32, context, 1.0, timeout=3.0)
    with futures.ThreadPoolExecutor(MAX_WAITERS) as pool:
        waiting = [pool.submit(client.get_result, sid, 30.0) for _ in range(MAX_WAITERS)]
        wait_for(
            lambda: runner.call(lambda _node, _now: len(runner._watches)) == MAX_WAITERS,
            "the callers to wait",
        )
        assert client.get_result(sid, wait=30.0).status is SessionStatus.RUNNING
        assert committee.clients[1].status()["member_id"] == 1  # the service still answers
        assert all(f.result().status is SessionStatus.FAILED for f in waiting)
    assert runner.call(lambda _node, _now: len(runner._watches)) == 0


def test_withdrawals_sign_concurrently_through_the_nodes(
    committee: Committee, tmp_path: Path
) -> None:
    run_dkg(committee, "btc-key", "bip340", 3)
    ecdsa_key = run_dkg(committee, "eth-key", "ecdsa", 3)
    frost_public = committee.runners[1].node.keys.frost_share("btc-key").public
    x_only = frost_public.group_public_key(frost.KEY_PATH)
    committee.stop_member(5)  # one member down for the whole pipeline

    scenario.load(committee.ledger, withdrawals=4)
    consensus = SoloConsensus(committee.ledger, Journal(tmp_path / "journal.db"))
    signers = {
        # An attempt must outlast the computation: CGGMP signing takes seconds of CPU here.
        "btc": NodeSigner(committee.clients, "btc-key", "bip340", x_only, message_for, 3.0),
        "eth": NodeSigner(committee.clients, "eth-key", "ecdsa", ecdsa_key, message_for, 20.0),
    }
    chains = {c: FakeChain(c, confirm_after=1) for c in ("btc", "eth")}
    worker = WithdrawWorker(committee.ledger, consensus, signers, chains, WorkerPolicy())
    most_at_once = 0

    def all_confirmed() -> bool:
        nonlocal most_at_once
        worker.step()
        most_at_once = max(most_at_once, sum(len(s._active) for s in signers.values()))
        ws = committee.ledger.withdrawals()
        return all(w.status == CONFIRMED for w in ws)

    wait_for(all_confirmed, "every withdrawal to confirm", limit=2400)
    assert most_at_once >= 2, "withdrawals were signed one at a time"
    for w in committee.ledger.withdrawals():
        assert w.signature_ref is not None
        sig = bytes.fromhex(w.signature_ref)
        if w.chain == "btc":
            assert coincurve.PublicKeyXOnly(x_only).verify(sig, message_for(w))
        else:
            recovered = coincurve.PublicKey.from_signature_and_message(
                sig, message_for(w), hasher=None
            )
            assert recovered.format() == ecdsa_key
    assert "UNAVAILABLE" in signers["btc"].errors.get(5, "")
