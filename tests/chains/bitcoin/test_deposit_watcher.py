"""The Bitcoin deposit watcher on a real btcd (regtest): a funder (the FROST group the node
mines to) pays the committee's P2TR address; deposits are credited at depth, once, across a
restart, a reorganisation shallower than the depth and one deeper than it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import coincurve
import pytest

from synod.chains.bitcoin.adapter import BitcoinAdapter
from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.watchers.base import DepositWatcher
from synod.runtime.watchers.bitcoin import BitcoinDeposits
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.watch_store import WatchStore
from tests.chains.bitcoin.conftest import FrostGroup, Node
from tests.chains.bitcoin.test_btcd import COIN, TAPROOT_ACTIVE_HEIGHT, threshold_sign, withdrawal

NET = Network.REGTEST
DEPTH = 3
COMMITTEE_KEY = coincurve.PrivateKey().public_key.format()[1:]  # an x-only output key
COMMITTEE = p2tr_address(COMMITTEE_KEY, NET)
SCRIPT = p2tr_script(COMMITTEE_KEY).hex()


@pytest.fixture(scope="module")
def chain(btcd: Node) -> Node:
    btcd.rpc.generate(TAPROOT_ACTIVE_HEIGHT)
    return btcd


class Pipeline:
    """Ledger, consensus and a watcher over one database file; `restart` reopens them all."""

    def __init__(self, workdir: Path, rpc: object, start: int) -> None:
        self.workdir, self.rpc, self.start = workdir, rpc, start
        self.open()

    def open(self) -> None:
        self.ledger = Ledger(SqliteDatabase(self.workdir / "ledger.db"))
        self.consensus = SoloConsensus(self.ledger, Journal(self.workdir / "journal.db"))
        self.store = WatchStore(self.ledger.db)
        source = BitcoinDeposits(self.rpc, [SCRIPT])  # type: ignore[arg-type]
        self.watcher = DepositWatcher(source, self.consensus, self.store, DEPTH, self.start)

    def restart(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        self.consensus.journal.close()
        self.ledger.db.close()

    def deposited(self) -> int:
        return self.ledger.balances().get(("btc", "BTC"), {}).get("deposited", 0)

    def utxos(self) -> dict[str, tuple[int, int]]:
        rows = self.ledger.db.query("SELECT outpoint, value, height FROM utxos")
        return {o: (int(v), int(h)) for o, v, h in rows}


@pytest.fixture
def pipeline(chain: Node, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, chain.rpc, chain.rpc.get_block_count() + 1)
    try:
        yield p
    finally:
        p.close()


_spent: set[int] = set()


def pay(node: Node, group: FrostGroup, amount: int) -> str:
    """The funder pays `amount` to the committee from a fresh matured coinbase; the txid."""
    height = next(h for h in range(1, 300) if h not in _spent)
    _spent.add(height)
    adapter = BitcoinAdapter(node.rpc, NET)
    w = withdrawal(node, f"fund-{height}", [height], amount, to=COMMITTEE)
    ref = threshold_sign(adapter, group, w)
    return adapter.broadcast(replace(w, signature_ref=ref), ref)


def test_credited_at_depth_once_across_restarts(
    chain: Node, frost_group: FrostGroup, pipeline: Pipeline
) -> None:
    txid = pay(chain, frost_group, 2 * COIN)
    chain.rpc.generate(1)
    included = chain.rpc.get_block_count()
    for confirmations in range(1, DEPTH):
        assert pipeline.watcher.step() == 0, f"credited at {confirmations} confirmation(s)"
        assert pipeline.deposited() == 0
        chain.rpc.generate(1)
    assert pipeline.watcher.step() == 1  # DEPTH confirmations now
    assert pipeline.utxos() == {f"{txid}:0": (2 * COIN, included)}
    assert pipeline.deposited() == 2 * COIN
    assert pipeline.watcher.step() == 0

    # A restart resumes from the persisted cursor ...
    pipeline.restart()
    chain.rpc.generate(2)
    assert pipeline.watcher.step() == 0
    assert pipeline.store.cursor("btc") is not None
    # ... and a lost cursor (a crash between the credit and the cursor) rescans harmlessly.
    pipeline.store.rewind("btc", pipeline.start - 1)
    pipeline.restart()
    assert pipeline.watcher.step() == 0
    assert pipeline.watcher.stats.already_credited == 1
    assert pipeline.deposited() == 2 * COIN


def test_shallow_reorg_neither_loses_nor_doubles(
    chain: Node, frost_group: FrostGroup, pipeline: Pipeline
) -> None:
    rpc = chain.rpc
    first = pay(chain, frost_group, 1 * COIN)
    [orphan] = rpc.generate(1)
    rpc.generate(DEPTH - 2)  # one confirmation short of the depth
    assert pipeline.watcher.step() == 0
    fork = rpc.get_block_count() - (DEPTH - 2)  # the height `first` was mined at
    rpc.call("invalidateblock", orphan)
    assert rpc.get_block_count() == fork - 1
    if first not in rpc.call("getrawmempool"):
        rpc.send_raw_transaction(rpc.get_raw_transaction(first)["hex"])
    second = pay(chain, frost_group, 3 * COIN)  # the new branch differs from the old one
    rpc.generate(DEPTH + 1)
    assert rpc.get_block_hash(fork) != orphan
    assert pipeline.watcher.step() == 2
    assert pipeline.watcher.stats.deep_reorgs == 0
    utxos = pipeline.utxos()
    assert set(utxos) == {f"{first}:0", f"{second}:0"}
    assert utxos[f"{first}:0"] == (1 * COIN, fork)  # on the new branch
    assert pipeline.deposited() == 4 * COIN


def test_reorg_deeper_than_the_depth_is_detected_and_rescanned(
    chain: Node, frost_group: FrostGroup, pipeline: Pipeline
) -> None:
    rpc = chain.rpc
    txid = pay(chain, frost_group, 5 * COIN)
    [mined] = rpc.generate(1)
    rpc.generate(DEPTH - 1)
    assert pipeline.watcher.step() == 1
    rpc.call("invalidateblock", mined)  # a processed block leaves the chain
    if txid not in rpc.call("getrawmempool"):
        rpc.send_raw_transaction(rpc.get_raw_transaction(txid)["hex"])
    later = pay(chain, frost_group, 1 * COIN)
    rpc.generate(DEPTH + 2)
    assert pipeline.watcher.step() == 0  # detected: rewound to the fork
    assert pipeline.watcher.stats.deep_reorgs == 1
    assert pipeline.watcher.step() == 1  # the rescan credits `later`; `txid` is not doubled
    assert pipeline.watcher.stats.already_credited == 1
    assert set(pipeline.utxos()) == {f"{txid}:0", f"{later}:0"}
    assert pipeline.deposited() == 6 * COIN


def test_the_committees_own_transactions_are_not_deposits(
    chain: Node, frost_group: FrostGroup
) -> None:
    """A transaction spending an output the ledger holds is a withdrawal: its change is
    credited by `Confirm`, so the watcher skips its outputs."""
    txid = pay(chain, frost_group, 1 * COIN)
    [mined] = chain.rpc.generate(1)
    height = chain.rpc.get_block_count()
    spent = {f"{vin['txid']}:{vin['vout']}" for vin in chain.rpc.get_raw_transaction(txid)["vin"]}
    plain = BitcoinDeposits(chain.rpc, [SCRIPT]).block(height)
    assert plain.hash == mined and [d.ref for d in plain.deposits] == [f"{txid}:0"]
    ours = BitcoinDeposits(chain.rpc, [SCRIPT], ours=spent.__contains__).block(height)
    assert ours.deposits == ()
