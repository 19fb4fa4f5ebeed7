"""Member processes with a ledger view (`synod node run --ledger --chains`): they sign a
withdrawal whose recorded template gives the message (the signature checked by
libsodium), refuse a forged message for a withdrawal being signed and an operator's
ad-hoc message, and a member started with `--test-fault invalid-shares` is named as the
culprit by the others. Real processes on 127.0.0.1; every wait polls with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import pytest
from solders.hash import Hash
from solders.keypair import Keypair

from synod.chains.localnode import free_base_port
from synod.chains.signing_view import write as write_view
from synod.chains.solana.tx import SolanaTransfer
from synod.node.ceremony import GroupKey, run_dkg
from synod.node.committee import init_committee
from synod.node.control import ControlClient, ControlError, operator_clients
from synod.node.local_cluster import member_dirs, start_members, stop_members, wait_linked
from synod.node.results import SessionStatus
from synod.node.templates import signing_session_id
from synod.runtime.interfaces import SigningTimeout
from synod.runtime.node_signer import NodeSigner
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger, Withdrawal
from synod.state.transactions import DepositCredit, Reserve, StartSign, WithdrawRequest
from tests.node.helpers import FAST_KDF, holds_nonces, wait_for

T, N, LIAR = 2, 3, 3
BLOCKHASH = Hash.new_unique()


@dataclass
class Cluster:
    root: Path
    ledger: Ledger
    view: Path
    clients: dict[int, ControlClient]
    key: GroupKey


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("ledger-view")
    root, view = tmp / "committee", tmp / "chains.json"
    ledger = Ledger(SqliteDatabase(tmp / "ledger.db"))
    init_committee(root, T, N, free_base_port(N), kdf=FAST_KDF)
    members = member_dirs(root)
    args = ["--ledger", str(tmp / "ledger.db"), "--chains", str(view)]
    extra = {
        m: args + (["--test-fault", "invalid-shares"] if m == LIAR else []) for m, _ in members
    }
    clients = operator_clients(root)
    try:
        started = start_members(members, 120.0, extra)
        assert not started.failed, started.failed
        wait_linked(members, 120.0)
        key = run_dkg(clients, "sol-key", "ed25519", T, 60.0)
        write_view(view, {"sol": {"group_key": key.public_key.hex()}})
        ledger.apply(DepositCredit("sol", "SOL", 10**10, "deposit-1", 1))
        yield Cluster(root, ledger, view, clients, key)
    finally:
        for client in clients.values():
            client.close()
        stop_members(members, 30.0)
        ledger.db.close()


def _signing(c: Cluster, request_id: str) -> Withdrawal:
    """A withdrawal recorded as being signed (what the worker does before it asks)."""
    c.ledger.apply(WithdrawRequest(request_id, "sol", "SOL", str(Keypair().pubkey()), 10**8))
    w = next(x for x in c.ledger.withdrawals() if x.request_id == request_id)
    c.ledger.apply(Reserve(w.withdraw_id))
    # the worker's StartSign fixes the blockhash every member signs under
    c.ledger.apply(StartSign(w.withdraw_id, f"session-{request_id}", sign_context=str(BLOCKHASH)))
    return c.ledger.withdrawal(w.withdraw_id)


def _message(c: Cluster, w: Withdrawal, to: str | None = None) -> bytes:
    assert w.template is not None
    template = json.loads(w.template)
    if to is not None:
        template["to"] = to  # what a compromised coordinator would ask the members to sign
    return SolanaTransfer.build(template, c.key.public_key, BLOCKHASH).message_bytes()


def _sign(c: Cluster, w: Withdrawal, message: bytes, timeout: float) -> str:
    signer = NodeSigner(
        c.clients, "sol-key", "ed25519", c.key.public_key, lambda _w: message, 1.0, timeout
    )
    assert w.session_id is not None
    signer.begin(w, w.session_id)
    end = time.monotonic() + timeout + 60
    while time.monotonic() < end:
        ref = signer.poll(w.session_id)
        if ref is not None:
            return ref
        time.sleep(0.05)
    raise AssertionError("the signer never ended")


def test_a_withdrawal_is_signed_from_the_recorded_template(cluster: Cluster) -> None:
    w = _signing(cluster, "ok-1")
    message = _message(cluster, w)
    ref = _sign(cluster, w, message, 60.0)
    nacl.signing.VerifyKey(cluster.key.public_key).verify(message, bytes.fromhex(ref))


def test_a_forged_message_is_refused_before_any_nonce(cluster: Cluster) -> None:
    w = _signing(cluster, "forged-1")
    forged = _message(cluster, w, to=str(Keypair().pubkey()))
    with pytest.raises(SigningTimeout):
        _sign(cluster, w, forged, 3.0)
    assert w.session_id is not None
    sid = signing_session_id(w.session_id, 0)
    clients = cluster.clients.values()
    wait_for(
        lambda: all(c.get_result(sid).status is not SessionStatus.RUNNING for c in clients),
        "the refused session to end on every member",
    )
    for client in clients:
        result = client.get_result(sid)
        assert result.status is SessionStatus.FAILED and result.signature is None
        assert result.reason == "timeout: template_mismatch"
    for member in range(1, N + 1):
        assert not holds_nonces(cluster.root, member, sid)


def test_an_operators_ad_hoc_message_is_refused(cluster: Cluster) -> None:
    for client in cluster.clients.values():
        with pytest.raises(ControlError, match="only withdrawals recorded in its ledger"):
            client.start_sign("sol-key", b"s" * 32, "ed25519", b"pay me", None, 1.0, 3.0)


def test_the_member_with_the_test_fault_is_named(cluster: Cluster) -> None:
    """With member 2 stopped, every sub-session needs member 3, whose shares never
    verify: the session cannot finish, and member 1 names member 3."""
    honest = [m for m in member_dirs(cluster.root) if m[0] == 2]
    stop_members(honest, 30.0)
    try:
        w = _signing(cluster, "liar-1")
        with pytest.raises(SigningTimeout):
            _sign(cluster, w, _message(cluster, w), 4.0)
        assert w.session_id is not None
        result = cluster.clients[1].get_result(signing_session_id(w.session_id, 0))
        assert result.culprits == {LIAR} and result.signature is None
    finally:
        view = ["--ledger", str(cluster.ledger.db.path), "--chains", str(cluster.view)]  # type: ignore[union-attr]
        assert not start_members(honest, 120.0, {2: view}).failed
        wait_linked(member_dirs(cluster.root), 120.0)
