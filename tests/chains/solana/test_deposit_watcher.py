"""The Solana deposit watcher over LiteSVM (the real runtime) and its block record: SOL and SPL
token transfers to the committee credited at depth, once, across a restart; a failed transfer
and a transfer to someone else are not deposits."""

from __future__ import annotations

from pathlib import Path

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.token import ID as TOKEN_PROGRAM_ID
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction
from solders.transaction_metadata import TransactionMetadata

from synod.chains.solana.blocks import LocalBlocks
from synod.chains.solana.tx import create_ata_idempotent, transfer_checked
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.watchers.base import DepositWatcher
from synod.runtime.watchers.solana import TOKEN_PROGRAM, SolanaDeposits
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.watch_store import WatchStore

from .conftest import Group, create_token

DEPTH = 2


def send(blocks: LocalBlocks, ixs: list[Instruction], signer: Keypair) -> object:
    bh = blocks.svm.latest_blockhash()
    tx = Transaction([signer], Message.new_with_blockhash(ixs, signer.pubkey(), bh), bh)
    return blocks.send(tx)


def test_token_program_id() -> None:
    assert str(TOKEN_PROGRAM_ID) == TOKEN_PROGRAM


def test_sol_and_token_deposits(group: Group, tmp_path: Path) -> None:
    svm = LiteSVM()
    funder = Keypair()
    svm.airdrop(funder.pubkey(), 100 * 10**9)
    token = create_token(svm, funder.pubkey(), 10**12)
    mint = Pubkey.from_string(token.mint)
    committee_ata = get_associated_token_address(group.pubkey, mint, TOKEN_PROGRAM_ID)
    funder_ata = get_associated_token_address(funder.pubkey(), mint, TOKEN_PROGRAM_ID)
    blocks = LocalBlocks(svm)

    def pipeline() -> tuple[Ledger, SoloConsensus, DepositWatcher]:
        ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
        consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
        source = SolanaDeposits(blocks, str(group.pubkey), {str(committee_ata): "USDC"})
        watcher = DepositWatcher(source, consensus, WatchStore(ledger.db), DEPTH, blocks.first_slot)
        return ledger, consensus, watcher

    ledger, consensus, watcher = pipeline()
    pay = transfer(
        TransferParams(from_pubkey=funder.pubkey(), to_pubkey=group.pubkey, lamports=3 * 10**9)
    )
    elsewhere = transfer(
        TransferParams(from_pubkey=funder.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**9)
    )
    assert isinstance(send(blocks, [pay, elsewhere], funder), TransactionMetadata)
    broke = Keypair()
    svm.airdrop(broke.pubkey(), 10**7)  # pays the fee, cannot pay the transfer: fails
    failed = transfer(
        TransferParams(from_pubkey=broke.pubkey(), to_pubkey=group.pubkey, lamports=10**9)
    )
    assert not isinstance(send(blocks, [failed], broke), TransactionMetadata)
    token_pay = [
        create_ata_idempotent(funder.pubkey(), group.pubkey, mint),
        transfer_checked(funder_ata, mint, committee_ata, funder.pubkey(), 250_000, 6),
    ]
    assert isinstance(send(blocks, token_pay, funder), TransactionMetadata)
    assert blocks.block(blocks.tip() + 1) is None  # still open: not visible
    assert watcher.step() == 0
    blocks.close_block()
    assert watcher.step() == 0  # 1 confirmation
    blocks.close_block()
    assert watcher.step() == 2  # SOL and the token, at DEPTH
    balances = ledger.balances()
    assert balances[("sol", "SOL")]["deposited"] == 3 * 10**9
    assert balances[("sol", "USDC")]["deposited"] == 250_000
    assert len(blocks.block(blocks.first_slot).transactions) == 3  # the failed one is recorded

    consensus.journal.close()
    ledger.db.close()
    ledger, consensus, watcher = pipeline()  # a restart
    blocks.close_block()
    assert watcher.step() == 0
    watcher.store.rewind("sol", blocks.first_slot - 1)  # a lost cursor only rescans
    assert watcher.step() == 0 and watcher.stats.already_credited == 2
    assert ledger.balances()[("sol", "SOL")]["deposited"] == 3 * 10**9
    consensus.journal.close()
    ledger.db.close()
