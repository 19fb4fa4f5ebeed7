"""The watcher loop: one chain's node failing does not keep the other chains' deposits from
being credited, and the failing watcher catches up once its node answers again."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from synod.chains.solana.blocks import LocalBlocks
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.watchers.base import Block, DepositWatcher, WatcherLoop
from synod.runtime.watchers.solana import SolanaDeposits
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.watch_store import WatchStore


class Flaky:
    """A source over the Solana record whose node is unreachable while `down` is set."""

    chain = "sol"

    def __init__(self, inner: SolanaDeposits) -> None:
        self.inner = inner
        self.down = True

    def tip(self) -> int:
        if self.down:
            raise ConnectionError("node unreachable")
        return self.inner.tip()

    def block(self, height: int) -> Block:
        return self.inner.block(height)

    def block_hash(self, height: int) -> str | None:
        return self.inner.block_hash(height)


def test_one_failing_watcher_does_not_stop_the_others(tmp_path: Path) -> None:
    svm = LiteSVM()
    blocks = LocalBlocks(svm)
    funder, first, second = Keypair(), Keypair(), Keypair()
    svm.airdrop(funder.pubkey(), 10**10)
    bh = svm.latest_blockhash()
    pays = [
        transfer(TransferParams(from_pubkey=funder.pubkey(), to_pubkey=k.pubkey(), lamports=n))
        for k, n in ((first, 10**9), (second, 2 * 10**9))
    ]
    message = Message.new_with_blockhash(pays, funder.pubkey(), bh)
    blocks.send(Transaction([funder], message, bh))
    blocks.close_block()

    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
    store = WatchStore(ledger.db)
    flaky = Flaky(SolanaDeposits(blocks, str(first.pubkey())))
    watchers = [
        DepositWatcher(flaky, consensus, store, 1, blocks.first_slot, name="sol-first"),
        DepositWatcher(
            SolanaDeposits(blocks, str(second.pubkey())),
            consensus,
            store,
            1,
            blocks.first_slot,
            name="sol-second",
        ),
    ]
    loop = WatcherLoop(watchers, poll_interval_s=0.0)
    loop.run(threading.Event(), max_passes=2)
    assert ledger.balance("sol", "SOL")["deposited"] == 2 * 10**9  # only the healthy one
    flaky.down = False
    assert loop.run_once() == 1
    assert ledger.balance("sol", "SOL")["deposited"] == 3 * 10**9
    consensus.journal.close()
    ledger.db.close()


class Down:
    """A source whose node never answers."""

    chain = "sol"

    def tip(self) -> int:
        raise ConnectionError("node unreachable")

    def block(self, height: int) -> Block:
        raise AssertionError("never asked")

    def block_hash(self, height: int) -> str | None:
        raise AssertionError("never asked")


def test_a_node_down_for_long_is_one_traceback_then_a_line_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
    now = [0.0]
    watcher = DepositWatcher(Down(), consensus, WatchStore(ledger.db), 1, name="sol-down")
    loop = WatcherLoop([watcher], poll_interval_s=0.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="synod.runtime.watchers"):
        for _ in range(100):  # 25 s of passes four times a second
            loop.run_once()
            now[0] += 0.25
        assert [r.exc_info is not None for r in caplog.records] == [True]  # one traceback
        for _ in range(40):  # 10 s more: past the interval, one line with the count
            loop.run_once()
            now[0] += 0.25
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "still failing" in lines[1] and "ConnectionError" in lines[1]
    assert loop.failures == {"sol-down": 140}
    consensus.journal.close()
    ledger.db.close()
