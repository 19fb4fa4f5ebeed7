"""A block record over LiteSVM, for the deposit watcher.

LiteSVM runs the real Solana runtime but keeps no blocks: it executes a transaction and
remembers its outcome, nothing more. `LocalBlocks` sends transactions through LiteSVM and
records each processed one (succeeded or failed, as a validator's blockstore would) in the
open slot; `close_block` ends the slot and starts the next (the clock's slot advances). A
closed block's hash chains its parent's hash, its slot and its signatures (LiteSVM has no
bank hash to offer). Transactions sent to LiteSVM directly (the withdraw adapter's, or an
airdrop) are not in the record; the watcher sees only what went through here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from solders.litesvm import LiteSVM
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

MAX_OPEN_TRANSACTIONS = 10_000  # bounded: close the block before more


@dataclass(frozen=True)
class RecordedTx:
    signature: str
    account_keys: tuple[str, ...]
    instructions: tuple[tuple[int, bytes, bytes], ...]  # (program index, account indices, data)
    ok: bool


@dataclass(frozen=True)
class RecordedBlock:
    slot: int
    hash: str
    parent: str
    transactions: tuple[RecordedTx, ...]


class LocalBlocks:
    def __init__(self, svm: LiteSVM) -> None:
        self.svm = svm
        self.first_slot = int(svm.get_clock().slot)
        self._blocks: list[RecordedBlock] = []
        self._open: list[RecordedTx] = []

    def send(self, tx: Transaction) -> TransactionMetadata | FailedTransactionMetadata:
        """Execute `tx` in the open slot; a processed one (even failed) joins the record."""
        if len(self._open) >= MAX_OPEN_TRANSACTIONS:
            raise RuntimeError("the open block is full: close it first")
        result = self.svm.send_transaction(tx)
        ok = isinstance(result, TransactionMetadata)
        if ok or _processed(result):
            message = tx.message
            self._open.append(
                RecordedTx(
                    str(tx.signatures[0]),
                    tuple(str(k) for k in message.account_keys),
                    tuple(
                        (ix.program_id_index, bytes(ix.accounts), bytes(ix.data))
                        for ix in message.instructions
                    ),
                    ok,
                )
            )
        return result

    def close_block(self) -> RecordedBlock:
        """End the open slot: its block is final in the record; the clock moves one slot."""
        slot = self.first_slot + len(self._blocks)
        parent = self._blocks[-1].hash if self._blocks else ""
        digest = hashlib.sha256(f"{parent}|{slot}".encode())
        for tx in self._open:
            digest.update(tx.signature.encode())
        block = RecordedBlock(slot, digest.hexdigest(), parent, tuple(self._open))
        self._blocks.append(block)
        self._open = []
        self.svm.warp_to_slot(slot + 1)
        return block

    def tip(self) -> int:
        """The last closed slot (first_slot - 1 before any)."""
        return self.first_slot + len(self._blocks) - 1

    def block(self, slot: int) -> RecordedBlock | None:
        index = slot - self.first_slot
        return self._blocks[index] if 0 <= index < len(self._blocks) else None


def _processed(result: TransactionMetadata | FailedTransactionMetadata) -> bool:
    """A failed transaction that still ran (fee charged) is in the block; one refused before
    execution (bad signature, unknown blockhash, duplicate) is not."""
    if isinstance(result, TransactionMetadata):
        return True
    text = str(result.err())
    return (
        not any(
            refusal in text
            for refusal in ("SignatureFailure", "BlockhashNotFound", "AlreadyProcessed")
        )
        and "InstructionError" in text
    )
