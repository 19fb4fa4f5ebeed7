"""EVM deposits: the custody contract's `Deposit` events (native coin) and ERC-20 `Transfer`
events to the contract, read per block from a node's logs.

The same watcher runs on py-evm in process and on geth: both backends in
`synod.chains.evm.adapter` give block headers and logs in one node-independent form. A log
counts only if it carries the hash of the block the watcher is processing (the node's answer
and the header belong to the same branch). The reference credited is
``<transaction hash>:<log index>``.
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
        for log in self.node.logs(height, [self.custody, *self.tokens]):
            if log.block_hash != header.hash:
                raise ReorgedWhileReading(f"{self.chain}: block {height} changed while reading")
            deposit = self._deposit(log, height)
            if deposit is not None:
                deposits.append(deposit)
        return Block(height, header.hash, header.parent_hash, tuple(deposits))

    def _deposit(self, log: Log, height: int) -> Deposit | None:
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
        return Deposit(self.chain, asset, amount, f"{log.transaction_hash}:{log.log_index}", height)
