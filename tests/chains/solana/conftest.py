"""Shared pieces for the Solana tests: a 2-of-3 FROST-Ed25519 group, a fresh LiteSVM (the real
Solana runtime, in-process), and an SPL mint created and funded through real instructions."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import pytest
from nacl.signing import VerifyKey
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.token import ID as TOKEN_PROGRAM_ID
from solders.token.associated import get_associated_token_address
from solders.token.state import TokenAccount
from solders.transaction import Transaction
from solders.transaction_metadata import TransactionMetadata

from synod.chains.solana.cluster import LocalCluster
from synod.chains.solana.tx import TokenInfo, create_ata_idempotent
from synod.crypto import frost
from synod.state.fees import FeeSchedule
from synod.state.machine import Withdrawal, canonical_template
from tests.fixtures import withdrawal as withdrawal_record

SOL_FEE = FeeSchedule().account_fee("sol")  # 5000 base + 2000 µlamports x 200k CU = 5400
MINT_SIZE = 82
INITIALIZE_MINT2 = 20
MINT_TO = 7


@dataclass
class Group:
    keys: dict[int, frost.KeyPackage]
    public: frost.PublicKeyPackage

    @property
    def key(self) -> bytes:
        return self.public.group_public_key()

    @property
    def pubkey(self) -> Pubkey:
        return Pubkey(self.key)

    def sign(self, message: bytes, signers: tuple[int, ...] = (1, 3)) -> bytes:
        """A 2-of-3 threshold signature, checked by PyNaCl (an implementation nobody here wrote)."""
        sig = frost.local_sign(self.keys, self.public, message, signers).raw
        assert len(sig) == 64
        VerifyKey(self.key).verify(message, sig)
        return sig


@pytest.fixture(scope="session")
def group() -> Group:
    keys, public = frost.local_dkg(frost.Ciphersuite.ED25519, 2, 3)
    return Group(keys, public)


@pytest.fixture
def svm(group: Group) -> LiteSVM:
    node = LocalCluster()  # a LiteSVM that keeps each account's transaction history
    assert isinstance(node.airdrop(group.pubkey, 10 * 10**9), TransactionMetadata)
    return node


def send_ok(svm: LiteSVM, ixs: list[Instruction], signers: list[Keypair]) -> None:
    bh = svm.latest_blockhash()
    tx = Transaction(signers, Message.new_with_blockhash(ixs, signers[0].pubkey(), bh), bh)
    result = svm.send_transaction(tx)
    assert isinstance(result, TransactionMetadata), result


def create_token(svm: LiteSVM, owner: Pubkey, supply: int, decimals: int = 6) -> TokenInfo:
    """A new mint (real System + Token instructions) with `supply` minted to owner's ATA."""
    funder, mint, authority = Keypair(), Keypair(), Keypair()
    svm.airdrop(funder.pubkey(), 10**9)
    create = create_account(
        CreateAccountParams(
            from_pubkey=funder.pubkey(),
            to_pubkey=mint.pubkey(),
            lamports=svm.minimum_balance_for_rent_exemption(MINT_SIZE),
            space=MINT_SIZE,
            owner=TOKEN_PROGRAM_ID,
        )
    )
    init = Instruction(
        TOKEN_PROGRAM_ID,
        bytes([INITIALIZE_MINT2, decimals]) + bytes(authority.pubkey()) + b"\x00",
        [AccountMeta(mint.pubkey(), is_signer=False, is_writable=True)],
    )
    ata = get_associated_token_address(owner, mint.pubkey(), TOKEN_PROGRAM_ID)
    mint_to = Instruction(
        TOKEN_PROGRAM_ID,
        struct.pack("<BQ", MINT_TO, supply),
        [
            AccountMeta(mint.pubkey(), is_signer=False, is_writable=True),
            AccountMeta(ata, is_signer=False, is_writable=True),
            AccountMeta(authority.pubkey(), is_signer=True, is_writable=False),
        ],
    )
    ixs = [create, init, create_ata_idempotent(funder.pubkey(), owner, mint.pubkey()), mint_to]
    send_ok(svm, ixs, [funder, mint, authority])
    return TokenInfo(str(mint.pubkey()), decimals)


def token_balance(svm: LiteSVM, owner: Pubkey, token: TokenInfo) -> int | None:
    ata = get_associated_token_address(owner, Pubkey.from_string(token.mint), TOKEN_PROGRAM_ID)
    account = svm.get_account(ata)
    return None if account is None else TokenAccount.from_bytes(account.data).amount


def sol_template(
    wid: str, to: Pubkey, amount: int, asset: str = "SOL", fee: int | None = None
) -> dict[str, object]:
    """A template shaped like the state machine's for account chains (and with its fee)."""
    if fee is None:
        fee = FeeSchedule().account_fee("sol", asset)
    return {
        "withdraw_id": wid,
        "chain": "sol",
        "asset": asset,
        "to": str(to),
        "amount": str(amount),
        "fee": str(fee),
        "fee_asset": "SOL",
        "lots": [["lot-1", asset, str(amount)]],
    }


def withdrawal(template: dict[str, object], status: str = "SIGNING") -> Withdrawal:
    text = canonical_template(template)
    return withdrawal_record(
        withdraw_id=str(template["withdraw_id"]),
        request_id=f"req-{template['withdraw_id']}",
        chain="sol",
        asset=str(template["asset"]),
        to=str(template["to"]),
        amount=int(str(template["amount"])),
        status=status,
        fee=int(str(template["fee"])),
        template_hash=hashlib.sha256(text).hexdigest(),
        template=text.decode(),
        session_id="s-1",
    )
