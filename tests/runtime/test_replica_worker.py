"""The runtime on the replicated ledger: four CometBFT validators with the ledger application,
four signer-node processes (each checking templates against its own member's replica), and
four withdraw workers, each reading its own replica, asking only its own member to sign and
writing back through its own node. A Bitcoin withdrawal on btcd is paid exactly once; when
two validators stop after the `StartSign` was agreed, no block is made, but the members sign,
the transaction is broadcast and mined, and the write-backs wait in each member's journal
until the validators return; then every replica shows it confirmed and the app hashes agree.
Needs cometbft and btcd (skipped without them unless required, as in CI)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import coincurve
import pytest

from synod.chains.bitcoin.adapter import BitcoinAdapter
from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.chains.bitcoin.devnode import TAPROOT_ACTIVE_HEIGHT, BtcdUnavailable, start_btcd
from synod.chains.localnode import NodeUnavailable, binary_dir, free_base_port
from synod.chains.signing_view import write as write_view
from synod.config import load_config
from synod.consensus.client import ReplicatedConsensus
from synod.consensus.localnet import LocalNet
from synod.node.ceremony import GroupKey, run_dkg
from synod.node.committee import init_committee
from synod.node.control import ControlClient, operator_clients
from synod.node.local_cluster import member_dirs, start_members, stop_members, wait_linked
from synod.processes import die_with_parent
from synod.runtime.attest import ProofAttester
from synod.runtime.journal import Journal
from synod.runtime.node_signer import NodeSigner
from synod.runtime.replica import ReplicaConsensus, ReplicaRunner
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import open_database
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest
from tests.consensus.conftest import CHAIN_ID, COMMITTEE, IDENTITIES, OPERATOR
from tests.node.helpers import FAST_KDF

pytestmark = pytest.mark.cometbft
MEMBERS = (1, 2, 3, 4)
DEADLINE_S = 240.0


def _required(name: str, reason: str) -> None:
    if os.environ.get(f"SYNOD_REQUIRE_{name}") == "1":
        pytest.fail(f"SYNOD_REQUIRE_{name}=1 but {reason}")
    pytest.skip(reason)


@dataclass
class World:
    net: LocalNet
    btcd: Any
    key: GroupKey
    clients: dict[int, ControlClient]
    runners: dict[int, ReplicaRunner]
    ledgers: dict[int, Ledger]


def _poll(what: str, check: Callable[[], bool], step: Callable[[], None] = lambda: None) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        step()
        try:
            if check():
                return
        except ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE_S} s: {what}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    try:
        comet = str(binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft")
    except NodeUnavailable as err:
        _required("COMETBFT", f"cometbft unavailable: {err}")
    urls = [f"sqlite:///{tmp_path / f'm{i}.db'}" for i in MEMBERS]
    net = LocalNet.create(tmp_path / "net", comet, COMMITTEE, urls, 150, die_with_parent)
    root = tmp_path / "committee"
    init_committee(root, 3, 4, free_base_port(4), kdf=FAST_KDF)
    members = member_dirs(root)
    view = tmp_path / "chains.json"
    extra = {m: ["--ledger", str(tmp_path / f"m{m}.db"), "--chains", str(view)] for m in MEMBERS}
    clients: dict[int, ControlClient] = {}
    btcd = None
    ledgers: dict[int, Ledger] = {}
    try:
        net.start_all()
        net.wait_height(1, deadline_s=DEADLINE_S)
        assert not start_members(members, 120.0, extra).failed
        wait_linked(members, 120.0)
        clients = operator_clients(root)
        key = run_dkg(clients, "btc-key", "bip340", 3, 60.0)
        write_view(view, {"btc": {"network": "regtest"}})
        address = p2tr_address(key.verifying_key, Network.REGTEST)
        try:
            btcd = start_btcd(address, tmp_path / "btcd")
        except BtcdUnavailable as err:
            _required("BTCD", f"btcd unavailable: {err}")
        btcd.mine(TAPROOT_ACTIVE_HEIGHT)
        policy = replace(
            WorkerPolicy.from_config(load_config(env={})), backoff_s=0.0, confirmations={"btc": 1}
        )
        runners = {}
        for i in MEMBERS:
            ledgers[i] = Ledger(open_database(urls[i - 1]))  # this member's replica
            adapter = BitcoinAdapter(btcd.rpc, Network.REGTEST)
            signer = NodeSigner(
                {i: clients[i]}, "btc-key", "bip340", key.verifying_key, adapter.sighashes,
                rotate_timeout=1.0, timeout=60.0,
            )  # fmt: skip
            consensus = ReplicaConsensus(
                ledgers[i],
                ReplicatedConsensus(
                    net.member(i).rpc, f"member:{i}", IDENTITIES[i].sign_secret, CHAIN_ID
                ),
                Journal(tmp_path / f"journal-{i}.db"),
                halt_after_s=1.5,
            )
            worker = WithdrawWorker(
                ledgers[i], consensus, {"btc": signer}, {"btc": adapter}, policy
            )
            attester = ProofAttester(ledgers[i].db, i, {"btc": adapter}, consensus)
            runners[i] = ReplicaRunner(consensus, worker, attester)
        # The committee's first matured coinbase, witnessed by members 1 to 3 (a quorum).
        block = btcd.rpc.get_block(btcd.rpc.get_block_hash(1), 2)
        coinbase = (block.get("rawtx") or block["tx"])[0]  # btcd names them rawtx
        sats = round(coinbase["vout"][0]["value"] * 10**8)
        for i in (1, 2, 3):
            runners[i].consensus.submit(
                DepositCredit("btc", "BTC", sats, f"{coinbase['txid']}:0", 1,
                              p2tr_script(key.verifying_key).hex())
            )  # fmt: skip
        yield World(net, btcd, key, clients, runners, ledgers)
    finally:
        for client in clients.values():
            client.close()
        stop_members(members, 30.0)
        if btcd is not None:
            btcd.stop()
        net.close()
        for ledger in ledgers.values():
            ledger.db.close()


def _statuses(world: World, request_id: str) -> set[str]:
    out = set()
    for ledger in world.ledgers.values():
        found = [w for w in ledger.withdrawals() if w.request_id == request_id]
        out.add(found[0].status if found else "absent")
    return out


def _step_all(world: World, members: tuple[int, ...] = MEMBERS) -> None:
    for i in members:
        world.runners[i].run_once()
    if "BROADCAST" in _statuses(world, "r1") or any(
        "broadcast" in _journaled(world, i) for i in members
    ):
        world.btcd.mine(1)


def _journaled(world: World, member: int) -> set[str]:
    return {tx.KIND for _seq, tx in world.runners[member].consensus.journal.pending()}


def test_workers_on_replicas_pay_once_and_sign_through_a_halt(world: World) -> None:
    recipient = p2tr_address(coincurve.PrivateKey().public_key.format()[1:], Network.REGTEST)
    api = ReplicatedConsensus(world.net.member(2).rpc, "operator:api", OPERATOR, CHAIN_ID)
    _poll("the deposit on every replica", lambda: all(
        ledger.utxos() for ledger in world.ledgers.values()))  # fmt: skip
    api.submit(WithdrawRequest("r1", "btc", "BTC", recipient, 20_000_000))
    _poll("queued everywhere", lambda: _statuses(world, "r1") == {"QUEUED"})

    # Reserve, then `StartSign` agreed in a block; the workers wait there.
    for i in MEMBERS:
        world.runners[i].run_once()  # each submits the same Reserve
    _poll("reserved everywhere", lambda: _statuses(world, "r1") == {"RESERVED"})
    for i in MEMBERS:
        world.runners[i].run_once()  # each submits the same StartSign
    _poll("signing agreed everywhere", lambda: _statuses(world, "r1") == {"SIGNING"})

    # Two of four validators stop: no quorum, no blocks. Their members' signer nodes and
    # workers go on (a validator is one process of a member, not the member).
    world.net.stop(3)
    world.net.stop(4)
    for i in MEMBERS:
        world.runners[i].consensus.observe()
    height = world.net.member(1).rpc.status().height

    # Signing, broadcasting and confirming go on; the write-backs wait in the journals.
    _poll(
        "signed, broadcast, mined and confirmed during the halt",
        lambda: all({"signed", "broadcast", "confirm"} <= _journaled(world, i) for i in MEMBERS),
        lambda: _step_all(world),
    )
    assert all(world.runners[i].consensus.paused for i in MEMBERS)
    assert world.net.member(1).rpc.status().height == height  # nothing agreed meanwhile
    assert _statuses(world, "r1") == {"SIGNING"}

    # The validators return: the journals drain and every replica shows it confirmed.
    world.net.start(3)
    world.net.start(4)
    _poll("confirmed everywhere", lambda: _statuses(world, "r1") == {"CONFIRMED"},
          lambda: _step_all(world))  # fmt: skip
    _poll("journals drained", lambda: all(
        not len(r.consensus.journal) for r in world.runners.values()),
        lambda: _step_all(world))  # fmt: skip

    # Paid exactly once: one transaction, with one output of exactly the amount to the recipient.
    txids = {ledger.withdrawals()[0].txid for ledger in world.ledgers.values()}
    assert len(txids) == 1
    txid = txids.pop()
    assert txid is not None
    tx = world.btcd.rpc.get_raw_transaction(txid)
    paid = [
        round(out["value"] * 10**8)
        for out in tx["vout"]
        if recipient
        in (out["scriptPubKey"].get("address"), *out["scriptPubKey"].get("addresses", []))
    ]
    assert paid == [20_000_000]
    _poll("the same state on every replica", lambda: len(
        {world.net.member(i).rpc.query("/digest") for i in MEMBERS}) == 1)  # fmt: skip
