"""The EVM deposit watcher: native deposits (the custody contract's `Deposit` event) and ERC-20
transfers to the contract, credited at depth and once, on py-evm in process (with a
reorganisation made by reverting the chain to a snapshot) and on geth through the same
backend interface."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from synod.chains.evm.adapter import EthTesterBackend, JsonRpcBackend
from synod.chains.evm.address import keccak256
from synod.chains.evm.custody import bytes_word, selector, uint_word
from synod.chains.evm.devchain import DEV_RELAYER_KEY, LocalEvm
from synod.chains.evm.devnode import GethNode, GethUnavailable, start_geth
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.watchers.base import DepositWatcher
from synod.runtime.watchers.evm import (
    DEPOSIT_TOPIC,
    TRANSFER_TOPIC,
    EvmDeposits,
    EvmNode,
    Header,
    Log,
    ReorgedWhileReading,
)
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.watch_store import WatchStore

from .conftest import ETHER, GWEI, Evm, Group, deploy_custody, random_address

DEPTH = 3
SUPPLY = 10**24


def test_topics_are_the_event_signatures() -> None:
    assert "0x" + keccak256(b"Deposit(address,uint256)").hex() == DEPOSIT_TOPIC
    assert "0x" + keccak256(b"Transfer(address,address,uint256)").hex() == TRANSFER_TOPIC


class Capped:
    """The node as seen up to block `cap`: geth --dev mines blocks of its own accord, so the
    tests fix which tip the watcher sees. Headers and logs are the node's."""

    def __init__(self, node: EvmNode) -> None:
        self.node = node
        self.cap = 0

    def block_number(self) -> int:
        return min(self.node.block_number(), self.cap)

    def block_header(self, number: int) -> Header | None:
        return self.node.block_header(number)

    def logs(self, number: int, addresses: list[str]) -> Sequence[Log]:
        return self.node.logs(number, addresses)

    def transaction_logs(self, transaction_hash: str) -> Sequence[Log]:
        return self.node.transaction_logs(transaction_hash)


class Pipeline:
    def __init__(self, workdir: Path, node: EvmNode, custody: str, token: str) -> None:
        self.workdir, self.node, self.custody, self.token = workdir, node, custody, token
        self.open()

    def open(self) -> None:
        self.ledger = Ledger(SqliteDatabase(self.workdir / "ledger.db"))
        self.consensus = SoloConsensus(self.ledger, Journal(self.workdir / "journal.db"))
        source = EvmDeposits("eth", self.node, self.custody, "ETH", {"USDT": self.token})
        self.watcher = DepositWatcher(source, self.consensus, WatchStore(self.ledger.db), DEPTH)

    def restart(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        self.consensus.journal.close()
        self.ledger.db.close()

    def deposited(self, asset: str) -> int:
        return self.ledger.balances().get(("eth", asset), {}).get("deposited", 0)

    def lots(self) -> set[str]:
        return {str(r[0]) for r in self.ledger.db.query("SELECT lot_id FROM lots")}


def advance(chain: LocalEvm, blocks: int) -> None:
    """Mine `blocks` blocks (one small unrelated transfer each: geth --dev mines on demand)."""
    for _ in range(blocks):
        assert chain.transact(random_address(), value=1)["status"] == 1


def mined_in(receipt: dict[str, Any]) -> tuple[str, int]:
    """(transaction hash, block number) from an eth-tester or a JSON-RPC receipt."""
    if "transaction_hash" in receipt:
        return str(receipt["transaction_hash"]).lower(), int(receipt["block_number"])
    return str(receipt["transactionHash"]).lower(), int(receipt["blockNumber"], 16)


def credited_once_at_depth(chain: LocalEvm, node: EvmNode, group: Group, workdir: Path) -> None:
    custody = deploy_custody(chain, group.px, fund=0)
    token = chain.deploy("TestToken", uint_word(SUPPLY))
    view = Capped(node)
    pipeline = Pipeline(workdir, view, custody, token)
    try:
        txhash, native_block = mined_in(chain.transact(custody, value=2 * ETHER))
        data = selector("transfer(address,uint256)") + bytes_word(bytes.fromhex(custody[2:]), 20)
        _, token_block = mined_in(chain.transact(token, data + uint_word(5_000)))
        chain.token_transfer(token, random_address(), 7)  # not to the committee: ignored
        advance(chain, DEPTH)
        assert token_block > native_block

        view.cap = native_block + DEPTH - 2  # the native deposit one confirmation short
        assert pipeline.watcher.step() == 0
        assert pipeline.deposited("ETH") == 0
        view.cap += 1
        assert pipeline.watcher.step() == 1
        assert pipeline.lots() == {f"eth:ETH:{txhash}:0"}
        view.cap = token_block + DEPTH - 2
        assert pipeline.watcher.step() == 0
        view.cap += 1
        assert pipeline.watcher.step() == 1
        assert (pipeline.deposited("ETH"), pipeline.deposited("USDT")) == (2 * ETHER, 5_000)

        pipeline.restart()  # the cursor survives; nothing is credited again
        view.cap = node.block_number()
        assert pipeline.watcher.step() == 0
        pipeline.watcher.store.rewind("eth", -1)  # even a lost cursor only rescans
        assert pipeline.watcher.step() == 0
        assert pipeline.watcher.stats.already_credited == 2
        assert (pipeline.deposited("ETH"), pipeline.deposited("USDT")) == (2 * ETHER, 5_000)
    finally:
        pipeline.close()


def test_py_evm_native_and_token_deposits(group: Group, tmp_path: Path) -> None:
    evm = Evm()
    credited_once_at_depth(evm, EthTesterBackend(evm.tester), group, tmp_path)


def test_py_evm_reorg_shallower_than_the_depth(group: Group, tmp_path: Path) -> None:
    evm = Evm()
    custody = deploy_custody(evm, group.px, fund=0)
    token = evm.deploy("TestToken", uint_word(SUPPLY))
    pipeline = Pipeline(tmp_path, EthTesterBackend(evm.tester), custody, token)
    try:
        snapshot = evm.tester.take_snapshot()
        orphaned = evm.transact(custody, value=3 * ETHER)  # on the branch that will be dropped
        advance(evm, DEPTH - 2)
        assert pipeline.watcher.step() == 0
        evm.tester.revert_to_snapshot(snapshot)  # the chain switches to another branch
        kept = evm.transact(custody, value=1 * ETHER)
        assert kept["block_number"] == orphaned["block_number"]
        advance(evm, DEPTH)
        assert pipeline.watcher.step() == 1
        assert pipeline.lots() == {f"eth:ETH:{str(kept['transaction_hash']).lower()}:0"}
        assert pipeline.deposited("ETH") == 1 * ETHER  # the orphaned deposit never counted
        assert pipeline.watcher.stats.deep_reorgs == 0
    finally:
        pipeline.close()


def transfer_data(to: str, amount: int) -> bytes:
    return (
        selector("transfer(address,uint256)")
        + bytes_word(bytes.fromhex(to[2:]), 20)
        + uint_word(amount)
    )


def test_py_evm_deposit_moved_by_a_deep_reorg_is_credited_once(
    group: Group, tmp_path: Path
) -> None:
    """The same token deposit, mined first alone (log 0 of its block), then after a reorg
    behind another transaction's log (log 1 of its block): one reference, one credit."""
    evm = Evm()
    custody = deploy_custody(evm, group.px, fund=0)
    token = evm.deploy("TestToken", uint_word(SUPPLY))
    depositor = Account.from_key(DEV_RELAYER_KEY)
    evm.token_transfer(token, depositor.address, 5_000)
    fields: dict[str, Any] = {"chainId": evm.chain_id, "gas": 200_000, "value": 0}
    fields |= {"maxFeePerGas": 2 * GWEI, "maxPriorityFeePerGas": GWEI, "to": token}
    fields |= {"nonce": evm.tester.get_nonce(depositor.address)}
    fields |= {"data": transfer_data(custody, 5_000)}
    raw = "0x" + bytes(depositor.sign_transaction(fields).raw_transaction).hex()
    backend = EthTesterBackend(evm.tester)
    pipeline = Pipeline(tmp_path, backend, custody, token)
    try:
        snapshot = evm.tester.take_snapshot()
        txhash = str(evm.tester.send_raw_transaction(raw)).lower()
        assert [e.log_index for e in backend.transaction_logs(txhash)] == [0]
        advance(evm, DEPTH)
        assert pipeline.watcher.step() == 1
        assert pipeline.lots() == {f"eth:USDT:{txhash}:0"}

        evm.tester.revert_to_snapshot(snapshot)  # a branch deeper than the watcher's depth
        evm.tester.disable_auto_mine_transactions()
        other = transfer_data(random_address(), 7)
        evm.tester.send_transaction(
            {"from": evm.funder, "to": token, "data": "0x" + other.hex(), "gas": 200_000}
        )
        evm.tester.send_raw_transaction(raw)
        evm.tester.enable_auto_mine_transactions()  # both in one block, the other one first
        assert [e.log_index for e in backend.transaction_logs(txhash)] == [1]
        advance(evm, 2 * DEPTH)

        assert pipeline.watcher.step() == 0  # finds the fork and rewinds
        assert pipeline.watcher.stats.deep_reorgs == 1
        assert pipeline.watcher.step() == 0  # the rescan sees the deposit again
        assert pipeline.watcher.stats.already_credited == 1
        assert pipeline.lots() == {f"eth:USDT:{txhash}:0"}
        assert pipeline.deposited("USDT") == 5_000
    finally:
        pipeline.close()


class Receiptless(Capped):
    """A node whose receipts do not hold the logs it reports for the block."""

    def transaction_logs(self, transaction_hash: str) -> Sequence[Log]:
        return []


def test_deposit_log_missing_from_its_receipt_is_read_again(group: Group) -> None:
    evm = Evm()
    custody = deploy_custody(evm, group.px, fund=0)
    _, height = mined_in(evm.transact(custody, value=ETHER))
    source = EvmDeposits("eth", Receiptless(EthTesterBackend(evm.tester)), custody, "ETH", {})
    with pytest.raises(ReorgedWhileReading, match="not in its receipt"):
        source.block(height)


@pytest.fixture(scope="module")
def geth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GethNode]:
    try:
        node = start_geth(tmp_path_factory.mktemp("geth"))
    except GethUnavailable as err:
        if os.environ.get("SYNOD_REQUIRE_GETH") == "1":
            pytest.fail(f"SYNOD_REQUIRE_GETH=1 but geth is unavailable: {err}")
        pytest.skip(f"geth unavailable: {err}")
    try:
        yield node
    finally:
        node.stop()


def test_geth_native_and_token_deposits(geth: GethNode, group: Group, tmp_path: Path) -> None:
    backend = geth.chain.backend
    assert isinstance(backend, JsonRpcBackend)
    credited_once_at_depth(geth.chain, backend, group, tmp_path)
