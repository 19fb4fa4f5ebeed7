"""Solana deposits: SOL transfers to the committee account, SPL token transfers to its token
accounts, read from a node's blocks.

Only top-level instructions of successful transactions count: a System `Transfer` whose
destination is the committee account, and an SPL Token `Transfer` / `TransferChecked` whose
destination is one of the committee's token accounts (`token_accounts`: account -> asset).
A transfer made inside another program (a cross-program invocation) is not seen here: on a
real cluster that needs the transaction's inner instructions, which LiteSVM does not keep.
The reference credited is ``<signature>:<instruction index>``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Protocol

from synod.runtime.watchers.base import Block, Deposit

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # classic SPL Token
_SYSTEM_TRANSFER = 2
_TOKEN_TRANSFER, _TOKEN_TRANSFER_CHECKED = 3, 12


class SolanaTx(Protocol):
    @property
    def signature(self) -> str: ...
    @property
    def account_keys(self) -> tuple[str, ...]: ...
    @property
    def instructions(self) -> tuple[tuple[int, bytes, bytes], ...]: ...
    @property
    def ok(self) -> bool: ...


class SolanaBlock(Protocol):
    @property
    def hash(self) -> str: ...
    @property
    def parent(self) -> str: ...
    @property
    def transactions(self) -> Sequence[SolanaTx]: ...


class SolanaNode(Protocol):
    """What the watcher reads (`synod.chains.solana.blocks.LocalBlocks` provides it)."""

    def tip(self) -> int: ...
    def block(self, slot: int) -> SolanaBlock | None: ...


class SolanaDeposits:
    """`BlockSource` for "sol"."""

    chain = "sol"

    def __init__(
        self, node: SolanaNode, account: str, token_accounts: Mapping[str, str] | None = None
    ) -> None:
        self.node = node
        self.account = account
        self.token_accounts = dict(token_accounts or {})

    def tip(self) -> int:
        return self.node.tip()

    def block_hash(self, height: int) -> str | None:
        block = self.node.block(height)
        return None if block is None else block.hash

    def block(self, height: int) -> Block:
        block = self.node.block(height)
        if block is None:
            raise LookupError(f"sol: no block at slot {height}")
        deposits = [d for tx in block.transactions if tx.ok for d in self._deposits(tx, height)]
        return Block(height, block.hash, block.parent, tuple(deposits))

    def _deposits(self, tx: SolanaTx, slot: int) -> list[Deposit]:
        keys = tx.account_keys
        found = []
        for index, (program_index, accounts, data) in enumerate(tx.instructions):
            if program_index >= len(keys) or any(a >= len(keys) for a in accounts):
                continue
            program = keys[program_index]
            asset, amount = "", 0
            if (
                program == SYSTEM_PROGRAM
                and len(data) == 12
                and struct.unpack_from("<I", data)[0] == _SYSTEM_TRANSFER
                and len(accounts) >= 2
                and keys[accounts[1]] == self.account
            ):
                asset, amount = "SOL", struct.unpack_from("<Q", data, 4)[0]
            elif program == TOKEN_PROGRAM and data and len(data) >= 9:
                if data[0] == _TOKEN_TRANSFER and len(accounts) >= 3:
                    destination = keys[accounts[1]]
                elif data[0] == _TOKEN_TRANSFER_CHECKED and len(accounts) >= 4:
                    destination = keys[accounts[2]]
                else:
                    continue
                if destination in self.token_accounts:
                    asset = self.token_accounts[destination]
                    amount = struct.unpack_from("<Q", data, 1)[0]
            if asset and amount > 0:
                found.append(Deposit("sol", asset, amount, f"{tx.signature}:{index}", slot))
        return found
