"""`ChainAdapter` for EVM chains: broadcast a raw signed transaction, count confirmations.

Thin on purpose: what the raw transaction is (an EOA payment or a relayer's call to the
custody contract) is decided by `raw_transaction(withdrawal, signature_ref)`, built from the
recorded template; the adapter only moves bytes and reads receipts, from an in-process
eth-tester chain or a JSON-RPC node.
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from synod.chains.evm.eoa import recover_sender, transaction_hash
from synod.runtime.interfaces import ChainStatus
from synod.state.machine import Withdrawal

RawTransactionSource = Callable[[Withdrawal, str], bytes]
BroadcastHistory = Callable[[str], list[str]]  # withdraw_id -> txids broadcast, oldest first


@dataclass(frozen=True)
class Receipt:
    block_number: int
    success: bool  # False: mined but reverted (the nonce and gas are spent)


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str  # 0x-prefixed, lower case
    parent_hash: str


@dataclass(frozen=True)
class LogEntry:
    """One event log, in the node-independent form the deposit watcher reads."""

    address: str  # 0x-prefixed, lower case
    topics: tuple[str, ...]  # 0x-prefixed 32-byte words, lower case
    data: str  # 0x-prefixed hex
    transaction_hash: str
    log_index: int  # position among all the logs of its block, as a node's JSON-RPC numbers it
    block_hash: str


class EvmBackend(Protocol):
    def send_raw_transaction(self, raw: bytes) -> None: ...

    def is_known(self, txid: bytes) -> bool:
        """Pending or mined."""
        ...

    def receipt(self, txid: bytes) -> Receipt | None: ...

    def block_number(self) -> int: ...


class EthTesterBackend:
    """An in-process `eth_tester.EthereumTester` (py-evm), mining each transaction at once."""

    def __init__(self, tester: Any) -> None:
        self.tester = tester

    def send_raw_transaction(self, raw: bytes) -> None:
        self.tester.send_raw_transaction("0x" + raw.hex())

    def is_known(self, txid: bytes) -> bool:
        from eth_tester.exceptions import TransactionNotFound

        try:
            self.tester.get_transaction_by_hash("0x" + txid.hex())
        except TransactionNotFound:
            return False
        return True

    def receipt(self, txid: bytes) -> Receipt | None:
        from eth_tester.exceptions import TransactionNotFound

        try:
            r = self.tester.get_transaction_receipt("0x" + txid.hex())
        except TransactionNotFound:
            return None
        if r is None or r.get("block_number") is None:
            return None
        return Receipt(int(r["block_number"]), int(r["status"]) == 1)

    def block_number(self) -> int:
        return int(self.tester.get_block_by_number("latest")["number"])

    def block_header(self, number: int) -> BlockHeader | None:
        from eth_tester.exceptions import BlockNotFound

        try:
            b = self.tester.get_block_by_number(number)
        except BlockNotFound:
            return None
        return BlockHeader(int(b["number"]), str(b["hash"]).lower(), str(b["parent_hash"]).lower())

    def logs(self, number: int, addresses: list[str]) -> list[LogEntry]:
        """The logs emitted by `addresses` in block `number`."""
        wanted = {address.lower() for address in addresses}
        return [e for e in self._block_logs(number) if e.address in wanted]

    def transaction_logs(self, transaction_hash: str) -> list[LogEntry]:
        """The logs of a mined transaction's receipt, in order (none if it is not mined)."""
        from eth_tester.exceptions import TransactionNotFound

        try:
            r = self.tester.get_transaction_receipt(transaction_hash)
        except TransactionNotFound:
            return []
        if r is None or r.get("block_number") is None:
            return []
        txhash = transaction_hash.lower()
        return [e for e in self._block_logs(int(r["block_number"])) if e.transaction_hash == txhash]

    def _block_logs(self, number: int) -> list[LogEntry]:
        """Every log of block `number`, indexed across the block as a node's JSON-RPC does
        (eth-tester numbers each receipt's logs from 0)."""
        from eth_tester.exceptions import BlockNotFound

        try:
            block = self.tester.get_block_by_number(number)
        except BlockNotFound:
            return []
        entries: list[LogEntry] = []
        for txhash in block["transactions"]:
            for e in self.tester.get_transaction_receipt(txhash)["logs"]:
                entries.append(
                    LogEntry(
                        str(e["address"]).lower(),
                        tuple(str(t).lower() for t in e["topics"]),
                        str(e["data"]),
                        str(e["transaction_hash"]).lower(),
                        len(entries),
                        str(e["block_hash"]).lower(),
                    )
                )
        return entries


class JsonRpcError(Exception):
    pass


class NotYetIndexed(JsonRpcError):
    """The node is still indexing transactions (geth after a start): ask again later."""


class JsonRpcBackend:
    """A node's JSON-RPC endpoint over HTTP (standard `eth_*` methods only)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)

    def request(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; a node error raises `JsonRpcError`."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        ).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read())
        if reply.get("error"):
            busy = "indexing is in progress" in str(reply["error"])
            raise (NotYetIndexed if busy else JsonRpcError)(f"{method}: {reply['error']}")
        return reply.get("result")

    def send_raw_transaction(self, raw: bytes) -> None:
        self.request("eth_sendRawTransaction", "0x" + raw.hex())

    def is_known(self, txid: bytes) -> bool:
        return self.request("eth_getTransactionByHash", "0x" + txid.hex()) is not None

    def receipt(self, txid: bytes) -> Receipt | None:
        try:
            r = self.request("eth_getTransactionReceipt", "0x" + txid.hex())
        except NotYetIndexed:
            return None  # cannot tell yet: treated as not mined
        if r is None or r.get("blockNumber") is None:
            return None
        return Receipt(int(r["blockNumber"], 16), int(r["status"], 16) == 1)

    def block_number(self) -> int:
        return int(self.request("eth_blockNumber"), 16)

    def block_header(self, number: int) -> BlockHeader | None:
        b = self.request("eth_getBlockByNumber", hex(number), False)
        if b is None:
            return None
        return BlockHeader(int(b["number"], 16), b["hash"].lower(), b["parentHash"].lower())

    def logs(self, number: int, addresses: list[str]) -> list[LogEntry]:
        """The logs emitted by `addresses` in block `number`."""
        found = self.request(
            "eth_getLogs", {"fromBlock": hex(number), "toBlock": hex(number), "address": addresses}
        )
        return _entries(found)

    def transaction_logs(self, transaction_hash: str) -> list[LogEntry]:
        """The logs of a mined transaction's receipt, in order (none if it is not mined)."""
        r = self.request("eth_getTransactionReceipt", transaction_hash)
        if r is None or r.get("blockNumber") is None:
            return []
        return _entries(r.get("logs"))


def _entries(found: list[dict[str, Any]] | None) -> list[LogEntry]:
    """JSON-RPC log objects (from `eth_getLogs` or a receipt), without removed ones."""
    return [
        LogEntry(
            e["address"].lower(),
            tuple(t.lower() for t in e["topics"]),
            e["data"],
            e["transactionHash"].lower(),
            int(e["logIndex"], 16),
            e["blockHash"].lower(),
        )
        for e in found or []
        if not e.get("removed")
    ]


class EvmAdapter:
    """Implements `synod.runtime.interfaces.ChainAdapter` for one EVM chain.

    `sender`, when given, is the address every broadcast must be signed by (the group
    address in EOA mode, the relayer in contract mode); anything else is refused before it
    leaves the process.

    `history` (EOA mode, e.g. `Ledger.broadcast_txids`) lists the transactions already
    broadcast for a withdrawal. They all share its account nonce, so if an earlier one was
    mined, it is the payment: `broadcast` returns it instead of sending another, and
    `status` reports it (`ChainStatus.txid`) when the latest one never made it.
    """

    def __init__(
        self,
        chain: str,
        backend: EvmBackend | str,
        raw_transaction: RawTransactionSource,
        sender: bytes | None = None,
        history: BroadcastHistory | None = None,
    ) -> None:
        self.chain = chain
        self.backend: EvmBackend = JsonRpcBackend(backend) if isinstance(backend, str) else backend
        self.raw_transaction = raw_transaction
        self.sender = sender
        self.history = history

    def _mined_sibling(
        self, withdrawal: Withdrawal, include_current: bool
    ) -> tuple[str, Receipt] | None:
        """A transaction already broadcast for this withdrawal that the chain has mined."""
        for txid in (self.history or (lambda _: []))(withdrawal.withdraw_id):
            if txid == withdrawal.txid and not include_current:
                continue
            receipt = self.backend.receipt(bytes.fromhex(txid.removeprefix("0x")))
            if receipt is not None:
                return txid, receipt
        return None

    def broadcast(self, withdrawal: Withdrawal, signature_ref: str) -> str:
        """Send the signed transaction; a second call for the same bytes only returns the
        txid (the same template and signature always give the same txid)."""
        mined = self._mined_sibling(withdrawal, include_current=True)
        if mined is not None:
            return mined[0]  # this nonce is used (paid, or reverted): nothing more may be sent
        raw = self.raw_transaction(withdrawal, signature_ref)
        if self.sender is not None and recover_sender(raw) != self.sender:
            raise ValueError(f"{withdrawal.withdraw_id}: transaction not signed by the sender")
        txid = transaction_hash(raw)
        if not self.backend.is_known(txid):
            try:
                self.backend.send_raw_transaction(raw)
            except Exception:
                if not self.backend.is_known(txid):  # e.g. "already known" from a node
                    raise
        return "0x" + txid.hex()

    def status(self, withdrawal: Withdrawal) -> ChainStatus:
        if not withdrawal.txid:
            return ChainStatus(0)
        receipt = self.backend.receipt(bytes.fromhex(withdrawal.txid.removeprefix("0x")))
        txid = ""
        if receipt is None:
            mined = self._mined_sibling(withdrawal, include_current=False)
            if mined is None:
                return ChainStatus(0)
            txid, receipt = mined
        if not receipt.success:
            reason = f"reverted in block {receipt.block_number}"
            if self.history is None:  # contract mode: the relayer's call, sent again later
                return ChainStatus(0, height=receipt.block_number, rejected=True, reason=reason)
            # EOA mode: the withdrawal's nonce is used up without paying; it needs a new one.
            proof = f"{txid or withdrawal.txid} at the withdrawal's nonce {reason}"
            return ChainStatus(
                0,
                height=receipt.block_number,
                rejected=True,
                reason=reason,
                unspendable_proof=proof,
                nonce_spent=True,
                txid=txid,
            )
        confirmations = self.backend.block_number() - receipt.block_number + 1
        return ChainStatus(max(confirmations, 0), height=receipt.block_number, txid=txid)
