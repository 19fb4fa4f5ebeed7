"""EVM deposits: the custody contract's `Deposit` events (native coin) and ERC-20 `Transfer`
events to the contract, read per block from a node's logs.

The same watcher runs on py-evm in process and on geth: both backends in
`synod.chains.evm.adapter` give block headers and logs in one node-independent form. A log
counts only if it carries the hash of the block the watcher is processing (the node's answer
and the header belong to the same branch). The reference credited is
``<transaction hash>:<index of the log among its transaction's logs>``, the index read from the
transaction's receipt. A node numbers logs across the whole block, so that number changes when
a reorganisation mines the same transaction at another position; the position within the
transaction does not, and the ledger (which refuses a second credit of one reference) credits
the deposit once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from synod.runtime.watchers.base import Block, Deposit

# keccak256("Deposit(address,uint256)"), the custody contract's event for native coin
DEPOSIT_TOPIC = "0xe1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c"
# keccak256("Transfer(address,address,uint256)"), ERC-20
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class Header(Protocol):
    @property
    def hash(self) -> str: ...
    @property
    def parent_hash(self) -> str: ...


class Log(Protocol):
    @property
    def address(self) -> str: ...
    @property
    def topics(self) -> tuple[str, ...]: ...
    @property
    def data(self) -> str: ...
    @property
    def transaction_hash(self) -> str: ...
    @property
    def log_index(self) -> int: ...
    @property
    def block_hash(self) -> str: ...


class EvmNode(Protocol):
    """What the watcher reads (`EthTesterBackend` and `JsonRpcBackend` provide it)."""

    def block_number(self) -> int: ...
    def block_header(self, number: int) -> Header | None: ...
    def logs(self, number: int, addresses: list[str]) -> Sequence[Log]: ...
    def transaction_logs(self, transaction_hash: str) -> Sequence[Log]:
        """The logs of a mined transaction's receipt, in order (none if it is not mined)."""
        ...


class ReorgedWhileReading(RuntimeError):
    """The node switched branches between the header and the logs: read again next pass."""


def _word_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


class EvmDeposits:
    """`BlockSource` for one EVM chain: deposits to `custody` in `native` and in `tokens`
    (asset -> ERC-20 contract address)."""

    def __init__(
        self, chain: str, node: EvmNode, custody: str, native: str, tokens: Mapping[str, str]
    ) -> None:
        self.chain = chain
        self.node = node
        self.custody = custody.lower()
        self.native = native
        self.tokens = {address.lower(): asset for asset, address in tokens.items()}

    def tip(self) -> int:
        return self.node.block_number()

    def block_hash(self, height: int) -> str | None:
        header = self.node.block_header(height)
        return None if header is None else header.hash

    def block(self, height: int) -> Block:
        header = self.node.block_header(height)
        if header is None:
            raise ReorgedWhileReading(f"{self.chain}: no block {height} any more")
        deposits = []
        receipts: dict[str, Sequence[Log]] = {}  # transaction hash -> its receipt's logs
        for log in self.node.logs(height, [self.custody, *self.tokens]):
            if log.block_hash != header.hash:
                raise ReorgedWhileReading(f"{self.chain}: block {height} changed while reading")
            found = self._asset_and_amount(log)
            if found is not None:
                asset, amount = found
                ref = self._reference(log, receipts)
                deposits.append(Deposit(self.chain, asset, amount, ref, height))
        return Block(height, header.hash, header.parent_hash, tuple(deposits))

    def _reference(self, log: Log, receipts: dict[str, Sequence[Log]]) -> str:
        """``<transaction hash>:<position of the log among its transaction's logs>``, from the
        transaction's receipt (read once per transaction and block, kept in `receipts`)."""
        txhash = log.transaction_hash
        if txhash not in receipts:
            receipts[txhash] = self.node.transaction_logs(txhash)
        key = (log.log_index, log.block_hash, log.address, log.topics, log.data)
        for index, entry in enumerate(receipts[txhash]):
            if (entry.log_index, entry.block_hash, entry.address, entry.topics, entry.data) == key:
                return f"{txhash}:{index}"
        raise ReorgedWhileReading(
            f"{self.chain}: log {log.log_index} of {txhash} is not in its receipt in this block"
        )

    def _asset_and_amount(self, log: Log) -> tuple[str, int] | None:
        """What a log deposits to the committee, if it is a deposit."""
        if not log.topics:
            return None
        topic = log.topics[0]
        if log.address == self.custody and topic == DEPOSIT_TOPIC:
            asset = self.native
        elif (
            log.address in self.tokens
            and topic == TRANSFER_TOPIC
            and len(log.topics) == 3
            and _word_address(log.topics[2]) == self.custody
        ):
            asset = self.tokens[log.address]
        else:
            return None
        amount = int(log.data[2:66] or "0", 16)
        if amount <= 0:
            return None
        return asset, amount
