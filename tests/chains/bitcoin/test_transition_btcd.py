"""A power transition on a real node (btcd, regtest, loopback): the 3-of-5 committee that the
node mined to hands over to a 4-of-7 committee with a fresh key; the ledger's UTXOs are swept
to the new P2TR address in batches (signed by the old committee through ROAST, inputs locked
like a withdrawal's) while withdrawals queued before, during and after are each paid once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from synod.chains.bitcoin.adapter import BitcoinAdapter
from synod.chains.bitcoin.address import Network, address_script, script_address, witness_script
from synod.crypto import frost
from synod.runtime.worker import WorkerPolicy
from synod.sim.committee import SimCommittee
from synod.state.machine import CONFIRMED, Withdrawal
from synod.state.transactions import DepositCredit
from synod.state.transition import TransitionRules
from tests.chains.bitcoin.conftest import FrostGroup, Node
from tests.chains.bitcoin.test_btcd import TAPROOT_ACTIVE_HEIGHT, coinbase
from tests.runtime.transition_world import World, genesis, handover

NET = Network.REGTEST


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Committee epoch 1 exists before the node starts: the node mines to its address."""
    holder: dict[str, World] = {}

    def sighashes(w: Withdrawal) -> list[bytes]:
        adapter: BitcoinAdapter = holder["world"].chains["btc"]
        return adapter.sighashes(w)

    world = World(
        Path(tmp_path_factory.mktemp("transition")),
        SimCommittee(schemes=("bip340",)),
        mode="fresh",
        messages={"btc": ("bip340", sighashes, frost.KEY_PATH)},
        policy=WorkerPolicy(max_in_flight_per_chain=3, confirmations={"btc": 1}, backoff_s=0),
        rules=TransitionRules(sweep_batch=3),
        recipient=lambda chain, n: script_address(witness_script(0, os.urandom(20)), NET),
    )
    holder["world"] = world
    genesis(world)
    yield world


@pytest.fixture(scope="module")
def frost_group(world: World) -> FrostGroup:
    """The key the node mines to: committee epoch 1's."""
    committee = world.committee
    return FrostGroup(committee.keys(1, "bip340"), committee.public[(1, "bip340")])


def test_fresh_key_sweep_on_btcd(btcd: Node, world: World) -> None:
    rpc = btcd.rpc
    rpc.generate(TAPROOT_ACTIVE_HEIGHT)
    credited = []
    for height in range(1, 9):  # matured coinbases to epoch 1's address
        outpoint, value, script = coinbase(btcd, height)
        world.ledger.apply(DepositCredit("btc", "BTC", value, outpoint, height, script))
        credited.append(outpoint)
    world.make_adapters = lambda path: {"btc": BitcoinAdapter(rpc, NET)}
    world.after_step = lambda: rpc.generate(1)
    world.open()

    handover(world, before=3, during=1, after=2)

    new_script = world.btc_script(2)
    assert new_script != world.btc_script(1)
    unspent = world.ledger.utxos()
    assert unspent and all(u["script"] == new_script for u in unspent)
    for u in unspent:  # the node agrees: unspent, paying the new committee's P2TR script
        txid, vout = u["outpoint"].split(":")
        out = rpc.get_tx_out(txid, int(vout), False)
        assert out is not None and out["scriptPubKey"]["hex"] == new_script
    for outpoint in credited:  # every old-key output the ledger held is spent on chain
        txid, vout = outpoint.split(":")
        assert rpc.get_tx_out(txid, int(vout), False) is None
    sweeps = world.ledger.select_withdrawals("purpose = 'migration'", (), 100)
    assert len(sweeps) >= 2 and all(s.status == CONFIRMED for s in sweeps)
    assert all(len(json.loads(s.template or "{}")["inputs"]) <= 3 for s in sweeps)
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED
        assert len(world.ledger.broadcast_txids(w.withdraw_id)) == 1  # paid by one transaction
        if w.purpose == "withdrawal":
            tx = rpc.get_raw_transaction(str(w.txid))
            script = address_script(w.to, NET).hex()
            paid = [o for o in tx["vout"] if o["scriptPubKey"]["hex"] == script]
            assert len(paid) == 1 and round(float(paid[0]["value"]) * 1e8) == w.amount
    t = world.ledger.transitions.transition(2)
    assert t.switch_window_ms is not None
    assert not any(world.committee.holds(m, 1) for m in (1, 2, 3, 4, 5))
